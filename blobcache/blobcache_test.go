package blobcache_test

import (
	"bytes"
	"context"
	"errors"
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
	reads atomic.Int64
}

func (c *countingBackend) ReadAt(ctx context.Context, id string, p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.Backend.ReadAt(ctx, id, p, off)
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
// (each chunk must be fetched once), then reopens the cache directory and
// reads everything again without touching the backend.
func TestSingleFlightAndReuse(t *testing.T) {
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

	be := &countingBackend{Backend: backend.NewLocalFS(out)}
	c, err := blobcache.Open(ctx, cacheDir, be, rd.Blobs[0], digests, blobcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobcache.Open(ctx, cacheDir, be, rd.Blobs[0], digests, blobcache.Options{}); err == nil {
		t.Error("a second Open of the same cache files succeeded")
	}
	readAll(c)
	// One read for the chunk-info region, one per referenced chunk.
	if got, want := be.reads.Load(), int64(1+len(digests)); got != want {
		t.Errorf("%d backend reads, want %d", got, want)
	}
	c.Close()

	be2 := &countingBackend{Backend: backend.NewLocalFS(out)}
	c2, err := blobcache.Open(ctx, cacheDir, be2, rd.Blobs[0], digests, blobcache.Options{})
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
