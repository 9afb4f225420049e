package rafsbuild_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treetar"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/tarstream"
)

// BenchmarkBuildDir builds the Go installation's tree (a realistic source of
// ~15k files) with each compressor. Throughput counts regular-file bytes;
// run with -benchtime=3x.
func BenchmarkBuildDir(b *testing.B) {
	src := os.Getenv("NYDUSIFY_BENCH_DIR")
	if src == "" {
		var err error
		if src, err = testenv.GoRoot(); err != nil {
			b.Fatal(err)
		}
	}
	var total int64
	filepath.Walk(src, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	for _, c := range compressors {
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				out := b.TempDir()
				if _, err := rafsbuild.BuildDir(context.Background(), src, out, "bench", rafsbuild.Options{Compressor: c, Digester: rafs.DigestBlake3}); err != nil {
					b.Fatal(err)
				}
				os.RemoveAll(out)
			}
		})
	}
}

// BenchmarkBuildLayer converts a gzip layer of the Go installation's tree
// (what convert does per layer: gunzip, tar, chunk, hash, compress, blob
// with inline bootstrap) with zstd. Throughput counts uncompressed tar
// bytes; run with -benchtime=3x.
func BenchmarkBuildLayer(b *testing.B) {
	src := os.Getenv("NYDUSIFY_BENCH_DIR")
	if src == "" {
		var err error
		if src, err = testenv.GoRoot(); err != nil {
			b.Fatal(err)
		}
	}
	layer := filepath.Join(b.TempDir(), "layer.tar.gz")
	if err := treetar.WriteGzipFile(layer, src); err != nil {
		b.Fatal(err)
	}
	var size int64
	if f, err := os.Open(layer); err == nil {
		zr, err := tarstream.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		size, _ = io.Copy(io.Discard, zr)
		zr.Close()
		f.Close()
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		f, err := os.Open(layer)
		if err != nil {
			b.Fatal(err)
		}
		zr, err := tarstream.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		blob, err := os.Create(filepath.Join(b.TempDir(), "blob"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rafsbuild.BuildLayer(context.Background(), zr, blob, rafsbuild.Options{Compressor: rafs.CompressZstd}, rafsbuild.NewChunkDict()); err != nil {
			b.Fatal(err)
		}
		zr.Close()
		f.Close()
		blob.Close()
	}
}
