package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
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

// BenchmarkBuildDirV5 builds the Go installation's tree with zstd as RAFS v6
// and as v5, for the yardstick: a v5 build within 10% of v6. Run
// with -benchtime=3x.
func BenchmarkBuildDirV5(b *testing.B) {
	src, err := testenv.GoRoot()
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []int{6, 5} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			for b.Loop() {
				out := b.TempDir()
				if _, err := rafsbuild.BuildDir(context.Background(), src, out, "bench", rafsbuild.Options{FsVersion: v, Compressor: rafs.CompressZstd}); err != nil {
					b.Fatal(err)
				}
				os.RemoveAll(out)
			}
		})
	}
}

// BenchmarkVerifyMerkleV5 opens a v5 bootstrap of 100,000 entries (1,000
// directories of 99 small files) and recomputes its whole Merkle tree; the
// issue asks for under a second.
func BenchmarkVerifyMerkleV5(b *testing.B) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for d := range 1000 {
		dir := fmt.Sprintf("d%04d/", d)
		tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755})
		for f := range 99 {
			body := fmt.Sprintf("file %d of %s\n", f, dir)
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%sf%02d", dir, f), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	opts := rafsbuild.Options{FsVersion: 5, Compressor: rafs.CompressZstd}
	blob, err := os.Create(filepath.Join(b.TempDir(), "blob"))
	if err != nil {
		b.Fatal(err)
	}
	defer blob.Close()
	layer, err := rafsbuild.BuildLayer(context.Background(), &buf, blob, opts, nil)
	if err != nil {
		b.Fatal(err)
	}
	merged, err := rafsbuild.Merge([]*rafsbuild.Layer{layer}, opts)
	if err != nil {
		b.Fatal(err)
	}
	boot := merged.Bootstrap
	b.SetBytes(int64(len(boot)))
	for b.Loop() {
		rd, err := rafs.Open(bytes.NewReader(boot), int64(len(boot)))
		if err != nil {
			b.Fatal(err)
		}
		m, err := rd.VerifyMerkle()
		if err != nil || m.Inodes != 100_001 || len(m.Mismatches) != 0 {
			b.Fatalf("%d inodes, %v", m.Inodes, err)
		}
	}
}
