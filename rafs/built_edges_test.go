package rafs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestManyBlobs merges 21 and 25 one-file layers. 21 device slots end
// exactly at the end of the first block (1408 + 21*128 = 4096); 25 spill
// into the next. Every file reads back from its own blob.
func TestManyBlobs(t *testing.T) {
	for _, n := range []int{21, 25} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			opts := rafsbuild.Options{Compressor: rafs.CompressNone}
			var layers []*rafsbuild.Layer
			blobs := map[string]string{}
			for i := range n {
				var tb bytes.Buffer
				tw := tar.NewWriter(&tb)
				body := fmt.Sprintf("layer %d content", i)
				tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%02d", i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
				tw.Write([]byte(body))
				tw.Close()
				path := filepath.Join(dir, fmt.Sprint(i))
				f, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				l, err := rafsbuild.BuildLayer(context.Background(), &tb, f, opts, nil)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				blobs[l.Digest] = path
				layers = append(layers, l)
			}
			m, err := rafsbuild.Merge(layers, opts)
			if err != nil {
				t.Fatal(err)
			}
			img, err := rafs.OpenImage(bytes.NewReader(m.Bootstrap), int64(len(m.Bootstrap)), rafs.BlobOpenerFunc(
				func(_ int, e rafs.BlobEntry) (io.ReaderAt, int64, error) {
					b, err := os.ReadFile(blobs[e.BlobID])
					return bytes.NewReader(b), int64(len(b)), err
				}))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(img.Bootstrap().Blobs); got != n || len(img.Bootstrap().Devices) != n {
				t.Fatalf("%d blobs, %d devices, want %d", got, len(img.Bootstrap().Devices), n)
			}
			for i := range n {
				got, err := readFile(img, fmt.Sprintf("/f%02d", i))
				if want := fmt.Sprintf("layer %d content", i); err != nil || string(got) != want {
					t.Errorf("/f%02d: %q, %v; want %q", i, got, err, want)
				}
			}
		})
	}
}

// TestNoBlob: a tree without file data makes a bootstrap with no blobs.
func TestNoBlob(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img", rafsbuild.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 0 {
		t.Fatalf("%d blobs", len(res.Blobs))
	}
	boot, err := os.ReadFile(filepath.Join(out, res.Bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	img := openImage(t, boot, nil)
	if got, err := readFile(img, "/empty"); err != nil || len(got) != 0 {
		t.Errorf("/empty: %q, %v", got, err)
	}
	if _, err := img.Blob(0); err == nil {
		t.Error("blob 0 of none")
	}
}

// TestMultiChunkZstd: a file of many 4 KiB chunks, zstd, its chunk info
// compressed too. Its content reads back; Verify reads each chunk of the
// blob once and counts them all; a cancelled Verify says so; blobs past
// the table are refused.
func TestMultiChunkZstd(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	content := make([]byte, 50*4096+123)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range content {
		content[i] = byte(rng.Uint32() % 16) // compressible, never repeating a chunk
	}
	os.MkdirAll(src, 0o755)
	if err := os.WriteFile(filepath.Join(src, "f"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img",
		rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x1000})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(filepath.Join(out, res.Bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := os.ReadFile(filepath.Join(out, res.Blobs[0]))
	if err != nil {
		t.Fatal(err)
	}
	// Count the reads of chunk data: Verify reads every chunk once.
	var dataReads atomic.Int64
	img, err := rafs.OpenImage(bytes.NewReader(boot), int64(len(boot)), rafs.BlobOpenerFunc(
		func(_ int, e rafs.BlobEntry) (io.ReaderAt, int64, error) {
			return readCounter{bytes.NewReader(blob), int64(e.MetaOffset), &dataReads}, int64(len(blob)), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	e := img.Bootstrap().Blobs[0]
	if e.MetaCompressor != rafs.CompressZstd || e.ChunkCount != 51 {
		t.Fatalf("blob: chunk info %v, %d chunks; want zstd, 51", e.MetaCompressor, e.ChunkCount)
	}
	if got, err := readFile(img, "/f"); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("/f: %d bytes, %v", len(got), err)
	}
	dataReads.Store(0)
	counts, err := img.Verify(context.Background())
	if err != nil || len(counts) != 1 || counts[0] != 51 {
		t.Errorf("Verify: %v, %v; want [51]", counts, err)
	}
	if n := dataReads.Load(); n != 51 {
		t.Errorf("Verify read chunk data %d times, want 51", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := img.Verify(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Verify: %v", err)
	}
	if _, err := img.Blob(1); err == nil {
		t.Error("Blob(1) of one blob")
	}
	if _, err := img.BlobAt(1, bytes.NewReader(blob), int64(len(blob))); err == nil {
		t.Error("BlobAt(1) of one blob")
	}
}

type readCounter struct {
	r       io.ReaderAt
	dataEnd int64
	n       *atomic.Int64
}

func (c readCounter) ReadAt(p []byte, off int64) (int, error) {
	if off < c.dataEnd {
		c.n.Add(1)
	}
	return c.r.ReadAt(p, off)
}

// TestVerifyChecksFileIndexes: a file's chunk index that names the right
// chunk at the wrong block address fails Verify, although every chunk of
// the blob is intact.
func TestVerifyChecksFileIndexes(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	content := make([]byte, 10*4096)
	for i := range content {
		content[i] = byte(i / 4096 * 37)
	}
	os.MkdirAll(src, 0o755)
	if err := os.WriteFile(filepath.Join(src, "f"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img",
		rafsbuild.Options{Compressor: rafs.CompressNone, ChunkSize: 0x1000})
	if err != nil {
		t.Fatal(err)
	}
	boot, _ := os.ReadFile(filepath.Join(out, res.Bootstrap))
	blob, _ := os.ReadFile(filepath.Join(out, res.Blobs[0]))
	if _, err := openImage(t, boot, blob).Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Chunk 7 of /f: chunk-info index 7, device 1 (blob 0), block 7.
	idx := []byte{7, 0, 1, 0, 7, 0, 0, 0}
	if bytes.Count(boot, idx) != 1 {
		t.Fatalf("chunk index %x occurs %d times", idx, bytes.Count(boot, idx))
	}
	bad := bytes.Clone(boot)
	bad[bytes.Index(bad, idx)+4] = 8
	if _, err := openImage(t, bad, blob).Verify(context.Background()); err == nil {
		t.Error("a chunk index with the wrong block address passed Verify")
	}
}
