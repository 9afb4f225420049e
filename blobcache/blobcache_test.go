package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

type countingBackend struct {
	backend.Backend
	reads, bytes atomic.Int64
}

func (c *countingBackend) ReadAt(ctx context.Context, id string, p []byte, off int64) (int, error) {
	c.reads.Add(1)
	c.bytes.Add(int64(len(p)))
	return c.Backend.ReadAt(ctx, id, p, off)
}

// referencedBytes is the compressed size of the chunks with a digest, plus
// the chunk-info region a first Open reads.
func referencedBytes(br *rafs.BlobReader, digests map[uint32][32]byte) int64 {
	n := int64(br.Entry.MetaCompressedSize + rafs.BlobMetaHeaderSize)
	for i := range digests {
		n += int64(br.Chunks[i].CompressedSize)
	}
	return n
}

// fixture builds the fstree tree with 64 KiB chunks and returns the build
// output directory, the bootstrap and the blob read directly from disk.
func fixture(t *testing.T) (string, *rafs.Reader, *rafs.BlobReader) {
	t.Helper()
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img",
		rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x10000})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(filepath.Join(out, res.Bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := rafs.Open(bytes.NewReader(boot), int64(len(boot)))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := os.ReadFile(filepath.Join(out, rd.Blobs[0].BlobID))
	if err != nil {
		t.Fatal(err)
	}
	digests, err := rd.ChunkDigests(0)
	if err != nil {
		t.Fatal(err)
	}
	br, err := rafs.OpenBlob(bytes.NewReader(blob), int64(len(blob)), rd.Blobs[0], digests)
	if err != nil {
		t.Fatal(err)
	}
	return out, rd, br
}

// TestSingleFlightAndReuse reads every chunk from many goroutines at once
// (each chunk must be fetched once: the backend serves each byte once),
// then reopens the cache directory and reads everything again without
// touching the backend. Without amplification every chunk costs one
// request; with it, fewer.
func TestSingleFlightAndReuse(t *testing.T) {
	for _, amplify := range []int64{-1, 0} {
		t.Run(fmt.Sprintf("amplify=%d", amplify), func(t *testing.T) { testSingleFlightAndReuse(t, amplify) })
	}
}

func testSingleFlightAndReuse(t *testing.T, amplify int64) {
	out, rd, ref := fixture(t)
	digests, _ := rd.ChunkDigests(0)
	cacheDir := t.TempDir()
	ctx := context.Background()

	readAll := func(c *blobcache.Cache) {
		t.Helper()
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range ref.Chunks {
					i := uint32((k + g*7) % len(ref.Chunks))
					if _, ok := digests[i]; !ok {
						continue
					}
					want, err := ref.ReadChunk(i, nil)
					if err != nil {
						t.Error(err)
						return
					}
					got := make([]byte, len(want))
					if _, err := c.ReadChunkAt(ctx, i, got, 0); err != nil || !bytes.Equal(got, want) {
						t.Errorf("chunk %d: %v (equal %v)", i, err, bytes.Equal(got, want))
						return
					}
				}
			}()
		}
		wg.Wait()
	}

	opts := blobcache.Options{Amplify: amplify}
	be := &countingBackend{Backend: backend.NewLocalFS(out)}
	c, err := blobcache.Open(ctx, cacheDir, be, rd.Blobs[0], digests, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobcache.Open(ctx, cacheDir, be, rd.Blobs[0], digests, opts); err == nil {
		t.Error("a second Open of the same cache files succeeded")
	}
	readAll(c)
	if got, want := be.bytes.Load(), referencedBytes(ref, digests); got != want {
		t.Errorf("backend served %d bytes, want %d (each referenced chunk once)", got, want)
	}
	// One read for the chunk-info region, then one per referenced chunk, or
	// fewer when runs of neighbours are fetched together.
	reads, perChunk := be.reads.Load(), int64(1+len(digests))
	if amplify < 0 && reads != perChunk {
		t.Errorf("%d backend reads, want %d", reads, perChunk)
	}
	if amplify >= 0 && reads >= perChunk {
		t.Errorf("%d backend reads with amplification, want fewer than %d", reads, perChunk)
	}
	t.Logf("%d chunks in %d backend reads", len(digests), reads)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	be2 := &countingBackend{Backend: backend.NewLocalFS(out)}
	c2, err := blobcache.Open(ctx, cacheDir, be2, rd.Blobs[0], digests, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	readAll(c2)
	if n := be2.reads.Load(); n != 0 {
		t.Errorf("reopened cache made %d backend reads, want 0", n)
	}
}

// TestDigestMismatch gives a wrong digest for one chunk: reading it fails
// with ErrDigestMismatch, it is not marked ready, and others still read.
func TestDigestMismatch(t *testing.T) {
	out, rd, ref := fixture(t)
	digests, _ := rd.ChunkDigests(0)
	bad := map[uint32][32]byte{}
	var victim uint32
	for i, d := range digests {
		bad[i] = d
		victim = i
	}
	d := bad[victim]
	d[0] ^= 1
	bad[victim] = d
	c, err := blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(out), rd.Blobs[0], bad, blobcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := make([]byte, ref.Chunks[victim].UncompressedSize)
	if _, err := c.ReadChunkAt(context.Background(), victim, p, 0); !errors.Is(err, blobcache.ErrDigestMismatch) {
		t.Errorf("reading chunk %d with a wrong digest: %v", victim, err)
	}
	if c.Ready(victim) {
		t.Error("a chunk that failed its digest is marked ready")
	}
	for i := range digests {
		if i == victim {
			continue
		}
		p := make([]byte, ref.Chunks[i].UncompressedSize)
		if _, err := c.ReadChunkAt(context.Background(), i, p, 0); err != nil {
			t.Errorf("chunk %d: %v", i, err)
		}
		break
	}
}

// TestPrefetch prefetches every chunk with three workers: each byte is
// fetched once, everything is then ready, and reads need no backend.
func TestPrefetch(t *testing.T) {
	out, rd, ref := fixture(t)
	digests, _ := rd.ChunkDigests(0)
	be := &countingBackend{Backend: backend.NewLocalFS(out)}
	ctx := context.Background()
	c, err := blobcache.Open(ctx, t.TempDir(), be, rd.Blobs[0], digests, blobcache.Options{Amplify: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []uint32
	for i := range ref.Chunks {
		all = append(all, uint32(i)) // chunks without a digest are skipped
	}
	n, err := c.Prefetch(ctx, all, 3)
	if err != nil || n != len(digests) {
		t.Fatalf("Prefetch = %d, %v; want %d chunks", n, err, len(digests))
	}
	if got, want := be.bytes.Load(), referencedBytes(ref, digests); got != want {
		t.Errorf("backend served %d bytes, want %d", got, want)
	}
	t.Logf("prefetched %d chunks in %d backend reads", n, be.reads.Load())
	reads := be.reads.Load()
	for i := range digests {
		if !c.Ready(i) {
			t.Fatalf("chunk %d not ready after Prefetch", i)
		}
		want, _ := ref.ReadChunk(i, nil)
		got := make([]byte, len(want))
		if _, err := c.ReadChunkAt(ctx, i, got, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if be.reads.Load() != reads {
		t.Error("reads after Prefetch went to the backend")
	}
	if n, err := c.Prefetch(ctx, all, 3); n != 0 || err != nil {
		t.Errorf("second Prefetch = %d, %v; want 0, nil", n, err)
	}
}
