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
	img := openImage(t, boot, blob)
	e := img.Bootstrap().Blobs[0]
	if e.MetaCompressor != rafs.CompressZstd || e.ChunkCount != 51 {
		t.Fatalf("blob: chunk info %v, %d chunks; want zstd, 51", e.MetaCompressor, e.ChunkCount)
	}
	if got, err := readFile(img, "/f"); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("/f: %d bytes, %v", len(got), err)
	}
	counts, err := img.Verify(context.Background())
	if err != nil || len(counts) != 1 || counts[0] != 51 {
		t.Errorf("Verify: %v, %v; want [51]", counts, err)
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
