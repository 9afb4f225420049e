package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// referencedBytes is the compressed size of the chunks the chunk table
// records, plus the chunk-info region a first Open reads.
func referencedBytes(br *rafs.BlobReader) int64 {
	n := int64(br.Entry.MetaCompressedSize + rafs.BlobMetaHeaderSize)
	for _, i := range br.TableChunks() {
		ch, _ := br.Chunk(i)
		n += int64(ch.CompressedSize)
	}
	return n
}

// fixture builds the fstree tree with 64 KiB chunks and returns the build
// output directory, the image and its blob read directly from disk.
func fixture(t *testing.T) (string, *rafs.Image, *rafs.BlobReader) {
	t.Helper()
	return fixtureWith(t, rafs.CompressZstd)
}

// fixtureWith is fixture with compressor c.
func fixtureWith(t *testing.T, c rafs.Compressor) (string, *rafs.Image, *rafs.BlobReader) {
	t.Helper()
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img",
		rafsbuild.Options{Compressor: c, ChunkSize: 0x10000})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(filepath.Join(out, res.Bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	img, err := rafs.OpenImage(bytes.NewReader(boot), int64(len(boot)), rafs.BlobOpenerFunc(
		func(_ int, e rafs.BlobEntry) (io.ReaderAt, int64, error) {
			blob, err := os.ReadFile(filepath.Join(out, e.BlobID))
			return bytes.NewReader(blob), int64(len(blob)), err
		}))
	if err != nil {
		t.Fatal(err)
	}
	br, err := img.Blob(0)
	if err != nil {
		t.Fatal(err)
	}
	return out, img, br
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
	out, img, ref := fixture(t)
	n := uint32(ref.ChunkCount())
	cacheDir := t.TempDir()
	ctx := context.Background()

	readAll := func(c *blobcache.Cache) {
		t.Helper()
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range n {
					i := (k + uint32(g)*7) % n
					if !ref.InTable(i) {
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
	c, err := blobcache.Open(ctx, cacheDir, be, img, 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobcache.Open(ctx, cacheDir, be, img, 0, opts); err == nil {
		t.Error("a second Open of the same cache files succeeded")
	}
	readAll(c)
	if got, want := be.bytes.Load(), referencedBytes(ref); got != want {
		t.Errorf("backend served %d bytes, want %d (each referenced chunk once)", got, want)
	}
	// One read for the chunk-info region, then one per referenced chunk, or
	// fewer when runs of neighbours are fetched together.
	referenced := ref.TableChunks()
	reads, perChunk := be.reads.Load(), int64(1+len(referenced))
	if amplify < 0 && reads != perChunk {
		t.Errorf("%d backend reads, want %d", reads, perChunk)
	}
	if amplify >= 0 && reads >= perChunk {
		t.Errorf("%d backend reads with amplification, want fewer than %d", reads, perChunk)
	}
	t.Logf("%d chunks in %d backend reads", len(referenced), reads)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	be2 := &countingBackend{Backend: backend.NewLocalFS(out)}
	c2, err := blobcache.Open(ctx, cacheDir, be2, img, 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	readAll(c2)
	if n := be2.reads.Load(); n != 0 {
		t.Errorf("reopened cache made %d backend reads, want 0", n)
	}
}

// TestDigestMismatch damages one chunk in the blob the backend serves:
// reading it fails with ErrDigestMismatch, it is not marked ready, and
// others still read.
func TestDigestMismatch(t *testing.T) {
	out, img, ref := fixture(t)
	referenced := ref.TableChunks()
	victim := referenced[len(referenced)-1]
	loc, _ := ref.Chunk(victim)
	id := ref.Entry.BlobID
	blob, err := os.ReadFile(filepath.Join(out, id))
	if err != nil {
		t.Fatal(err)
	}
	// Flip a bit of the last stored byte: zstd and lz4 data still decode
	// (or fail), a raw chunk changes; either way the chunk is refused.
	blob[loc.CompressedOffset+uint64(loc.CompressedSize)-1] ^= 0x01
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, id), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(bad), img, 0, blobcache.Options{Amplify: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := make([]byte, loc.UncompressedSize)
	if _, err := c.ReadChunkAt(context.Background(), victim, p, 0); err == nil {
		t.Fatalf("chunk %d read despite its damaged bytes", victim)
	} else if loc.Compressed && !errors.Is(err, rafs.ErrCorrupt) || !loc.Compressed && !errors.Is(err, blobcache.ErrDigestMismatch) {
		t.Errorf("reading damaged chunk %d: %v", victim, err)
	}
	if c.Ready(victim) {
		t.Error("a chunk that failed its digest is marked ready")
	}
	for _, i := range referenced {
		if i == victim {
			continue
		}
		l, _ := ref.Chunk(i)
		p := make([]byte, l.UncompressedSize)
		if _, err := c.ReadChunkAt(context.Background(), i, p, 0); err != nil {
			t.Errorf("chunk %d: %v", i, err)
		}
		break
	}
}

// TestPrefetch prefetches every chunk with three workers: each byte is
// fetched once, everything is then ready, and reads need no backend.
func TestPrefetch(t *testing.T) {
	out, img, ref := fixture(t)
	referenced := ref.TableChunks()
	be := &countingBackend{Backend: backend.NewLocalFS(out)}
	ctx := context.Background()
	c, err := blobcache.Open(ctx, t.TempDir(), be, img, 0, blobcache.Options{Amplify: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []uint32
	for i := range ref.ChunkCount() {
		all = append(all, uint32(i)) // chunks outside the chunk table are skipped
	}
	n, err := c.Prefetch(ctx, all, 3)
	if err != nil || n != len(referenced) {
		t.Fatalf("Prefetch = %d, %v; want %d chunks", n, err, len(referenced))
	}
	if got, want := be.bytes.Load(), referencedBytes(ref); got != want {
		t.Errorf("backend served %d bytes, want %d", got, want)
	}
	t.Logf("prefetched %d chunks in %d backend reads", n, be.reads.Load())
	reads := be.reads.Load()
	for _, i := range referenced {
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

// TestFlushDoesNotHoldReaders holds the periodic flush inside its fsync of
// the blob's view and reads another chunk meanwhile: the read must finish
// without waiting for the fsync (commit 34fc0f7; before it, flush kept the
// pending-marks lock across the fsync and every committing reader waited),
// and no mark may reach the chunk map while its data is not yet synced.
// A failed fsync keeps the marks for the next flush.
func TestFlushDoesNotHoldReaders(t *testing.T) {
	out, img, ref := fixture(t)
	var chunks []uint32
	for i := range uint32(ref.ChunkCount()) {
		if ref.InTable(i) {
			chunks = append(chunks, i)
		}
	}
	if len(chunks) < 2 {
		t.Fatalf("fixture has %d chunks, want 2", len(chunks))
	}
	first, second := chunks[0], chunks[len(chunks)-1]

	entered, release := make(chan struct{}), make(chan struct{})
	var syncs atomic.Int32
	restore := blobcache.SetSyncData(func(f *os.File) error {
		switch syncs.Add(1) {
		case 1:
			return errors.New("injected fsync failure")
		case 2:
			close(entered)
			<-release
		}
		return f.Sync()
	})
	defer restore()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	cacheDir := t.TempDir()
	c, err := blobcache.Open(context.Background(), cacheDir, backend.NewLocalFS(out), img, 0, blobcache.Options{Amplify: -1})
	if err != nil {
		t.Fatal(err)
	}
	read := func(i uint32) error {
		want, err := ref.ReadChunk(i, nil)
		if err != nil {
			return err
		}
		got := make([]byte, len(want))
		if _, err := c.ReadChunkAt(context.Background(), i, got, 0); err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("chunk %d differs", i)
		}
		return nil
	}
	if err := read(first); err != nil {
		t.Fatal(err)
	}
	// The first flush fails its fsync, the second one holds in it.
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the flusher never synced twice")
	}
	cmap := filepath.Join(cacheDir, ref.Entry.BlobID+".chunk_map")
	if m, err := os.ReadFile(cmap); err != nil || int(first) < len(m) && m[first] != 0 {
		t.Errorf("chunk %d marked before its data was synced (%v)", first, err)
	}
	done := make(chan error, 1)
	go func() { done <- read(second) }()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
		close(release)
	case <-time.After(10 * time.Second):
		t.Error("a read committing a chunk waited for the flush's fsync")
		close(release)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	released = true
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(cmap)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint32{first, second} {
		if int(i) >= len(m) || m[i] != 1 {
			t.Errorf("chunk %d not marked after Close (a failed fsync must keep its marks)", i)
		}
	}
}
