package blobcache_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/rafs"
)

// TestCacheEdges: the view file has the blob's uncompressed size (nydusd's
// <blob id>.blob.data layout); blob and chunk indexes past the end are
// refused or ignored; a read inside a chunk returns those bytes and one
// past the chunk is refused.
func TestCacheEdges(t *testing.T) {
	out, img, ref := fixture(t)
	dir := t.TempDir()
	ctx := context.Background()
	be := backend.NewLocalFS(out)
	for _, bad := range []int{-1, 1} {
		if c, err := blobcache.Open(ctx, t.TempDir(), be, img, bad, blobcache.Options{}); err == nil {
			c.Close()
			t.Errorf("Open of blob %d of 1 succeeded", bad)
		}
	}
	c, err := blobcache.Open(ctx, dir, be, img, 0, blobcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := os.Stat(filepath.Join(dir, ref.Entry.BlobID+".blob.data"))
	if err != nil || st.Size() != int64(ref.Entry.UncompressedSize) {
		t.Errorf("view file: %v, want %d bytes", err, ref.Entry.UncompressedSize)
	}
	n := uint32(ref.ChunkCount())
	if c.Ready(n) || c.Ready(n+5) {
		t.Error("a chunk past the end is ready")
	}
	if got, err := c.Prefetch(ctx, []uint32{n, n + 1}, 2); got != 0 || err != nil {
		t.Errorf("prefetch past the end: %d, %v", got, err)
	}
	var i uint32
	var want []byte
	for _, k := range ref.TableChunks() {
		if want, err = ref.ReadChunk(k, nil); err == nil && len(want) >= 200 {
			i = k
			break
		}
	}
	if len(want) < 200 {
		t.Fatal("no chunk of 200 bytes or more")
	}
	p := make([]byte, len(want)-100)
	if k, err := c.ReadChunkAt(ctx, i, p, 100); err != nil || k != len(p) || !bytes.Equal(p, want[100:]) {
		t.Errorf("read at 100 of chunk %d: %d, %v", i, k, err)
	}
	if _, err := c.ReadChunkAt(ctx, i, make([]byte, len(want)-99), 100); err == nil {
		t.Error("a read one byte past the chunk succeeded")
	}
	if _, err := c.ReadChunkAt(ctx, i, make([]byte, len(want)+1), 0); err == nil {
		t.Error("a read longer than the chunk succeeded")
	}
}

// contiguous returns three chunk indexes in the table whose compressed
// bytes follow each other in the blob.
func contiguous(t *testing.T, ref *rafs.BlobReader) [3]uint32 {
	t.Helper()
	for i := uint32(0); int(i)+2 < ref.ChunkCount(); i++ {
		a, _ := ref.Chunk(i)
		b, _ := ref.Chunk(i + 1)
		c, _ := ref.Chunk(i + 2)
		if ref.InTable(i) && ref.InTable(i+1) && ref.InTable(i+2) &&
			a.CompressedOffset+uint64(a.CompressedSize) == b.CompressedOffset &&
			b.CompressedOffset+uint64(b.CompressedSize) == c.CompressedOffset {
			return [3]uint32{i, i + 1, i + 2}
		}
	}
	t.Fatal("no three contiguous chunks")
	return [3]uint32{}
}

// TestAmplifyLimit: a request may cover exactly Amplify compressed bytes:
// with the limit at two chunks' size, reading the first brings the second
// and not the third. Reading towards the blob's end stops at the end.
func TestAmplifyLimit(t *testing.T) {
	out, img, ref := fixture(t)
	run := contiguous(t, ref)
	a, _ := ref.Chunk(run[0])
	b, _ := ref.Chunk(run[1])
	limit := int64(a.CompressedSize + b.CompressedSize)
	c, err := blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(out), img, 0, blobcache.Options{Amplify: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ReadChunkAt(context.Background(), run[0], make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	if !c.Ready(run[1]) || c.Ready(run[2]) {
		t.Errorf("limit of two chunks: second ready %v, third ready %v; want true, false", c.Ready(run[1]), c.Ready(run[2]))
	}
	third, _ := ref.Chunk(run[2])
	c3, err := blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(out), img, 0,
		blobcache.Options{Amplify: limit + int64(third.CompressedSize)})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := c3.ReadChunkAt(context.Background(), run[0], make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	if !c3.Ready(run[1]) || !c3.Ready(run[2]) {
		t.Errorf("limit of three chunks: second ready %v, third ready %v", c3.Ready(run[1]), c3.Ready(run[2]))
	}

	c2, err := blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(out), img, 0, blobcache.Options{Amplify: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	last := uint32(ref.ChunkCount() - 1)
	tc := ref.TableChunks()
	if _, err := c2.ReadChunkAt(context.Background(), tc[len(tc)-2], make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	if ref.InTable(last) && !c2.Ready(last) {
		t.Errorf("reading chunk %d with no limit did not bring the last chunk %d", tc[len(tc)-2], last)
	}
}

// TestRawChunkInfo: a blob whose chunk info is stored raw (compressed size
// equal to its size) is cached like any other.
func TestRawChunkInfo(t *testing.T) {
	out, img, ref := fixtureWith(t, rafs.CompressNone)
	if ref.Entry.MetaCompressedSize != ref.Entry.MetaSize {
		t.Fatalf("chunk info %d of %d bytes: not raw", ref.Entry.MetaCompressedSize, ref.Entry.MetaSize)
	}
	c, err := blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(out), img, 0, blobcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, i := range ref.TableChunks() {
		want, _ := ref.ReadChunk(i, nil)
		got := make([]byte, len(want))
		if _, err := c.ReadChunkAt(context.Background(), i, got, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
}

// TestWarnings: a chunk that fails to verify is logged as a warning naming
// it; good reads log nothing.
func TestWarnings(t *testing.T) {
	out, img, ref := fixture(t)
	logger, hook := logtest.NewNullLogger()
	c, err := blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(out), img, 0,
		blobcache.Options{Logger: logger, Amplify: -1})
	if err != nil {
		t.Fatal(err)
	}
	tc := ref.TableChunks()
	good := tc[0]
	if _, err := c.ReadChunkAt(context.Background(), good, make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	if len(hook.AllEntries()) != 0 {
		t.Errorf("a good read logged %v", hook.AllEntries()[0].Message)
	}
	c.Close()

	// Damage the last chunk in the blob file.
	bad := tc[len(tc)-1]
	loc, _ := ref.Chunk(bad)
	blobPath := filepath.Join(out, ref.Entry.BlobID)
	data, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	data[loc.CompressedOffset] ^= 0xff
	if err := os.WriteFile(blobPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = blobcache.Open(context.Background(), t.TempDir(), backend.NewLocalFS(out), img, 0,
		blobcache.Options{Logger: logger, Amplify: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ReadChunkAt(context.Background(), bad, make([]byte, 1), 0); err == nil {
		t.Fatal("a damaged chunk was read")
	}
	e := hook.LastEntry()
	if e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "chunk") {
		t.Errorf("damaged chunk: last log entry %+v", e)
	}
}
