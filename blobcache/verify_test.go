package blobcache_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/internal/logs"
)

// TestCorruptCachedChunkIsRepaired fills a cache, changes a byte of one
// cached chunk on disk between two opens (two mount processes), and
// requires the second to serve the right bytes, log the repair and fetch
// that chunk, and only it, again; a third open finds the repaired chunk.
func TestCorruptCachedChunkIsRepaired(t *testing.T) {
	out, img, ref := fixture(t)
	cacheDir := t.TempDir()
	ctx := context.Background()
	readAll := func(c *blobcache.Cache) {
		t.Helper()
		for _, i := range ref.TableChunks() {
			want, err := ref.ReadChunk(i, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			if _, err := c.ReadChunkAt(ctx, i, got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("chunk %d: %v (equal %v)", i, err, bytes.Equal(got, want))
			}
		}
	}
	c, err := blobcache.Open(ctx, cacheDir, backend.NewLocalFS(out), img, 0, blobcache.Options{Amplify: -1})
	if err != nil {
		t.Fatal(err)
	}
	readAll(c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Two victims: a chunk of zeros (a hole in the view) and one of data.
	var victims []uint32
	var zero, data bool
	for _, i := range ref.TableChunks() {
		b, _ := ref.ReadChunk(i, nil)
		isZero := !bytes.ContainsFunc(b, func(r rune) bool { return r != 0 })
		if len(b) > 1 && ((isZero && !zero) || (!isZero && !data)) {
			victims = append(victims, i)
			zero, data = zero || isZero, data || !isZero
		}
	}
	if !zero || !data {
		t.Fatalf("the fixture lacks a zero or a data chunk: %v", victims)
	}
	view := filepath.Join(cacheDir, ref.Entry.BlobID+".blob.data")
	f, err := os.OpenFile(view, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range victims {
		loc, _ := ref.Chunk(v)
		b := make([]byte, 1)
		off := int64(loc.UncompressedOffset) + int64(loc.UncompressedSize)/2
		f.ReadAt(b, off)
		b[0] ^= 0x55
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	for round, wantRepair := range []bool{true, false} {
		var log bytes.Buffer
		be := &countingBackend{Backend: backend.NewLocalFS(out)}
		c, err := blobcache.Open(ctx, cacheDir, be, img, 0, blobcache.Options{Amplify: -1, Logger: logs.New(&log)})
		if err != nil {
			t.Fatal(err)
		}
		readAll(c)
		readAll(c)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		repaired := strings.Contains(log.String(), "fetching it again") && strings.Contains(log.String(), "digest")
		if repaired != wantRepair || (wantRepair && be.reads.Load() != int64(len(victims))) || (!wantRepair && be.reads.Load() != 0) {
			t.Errorf("open %d: repair logged %v, %d backend reads; log:\n%s", round+2, repaired, be.reads.Load(), log.String())
		}
	}
}
