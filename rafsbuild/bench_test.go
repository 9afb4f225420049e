package rafsbuild_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// BenchmarkBuildDir builds the Go installation's tree (a realistic source of
// ~15k files) with each compressor. Throughput counts regular-file bytes;
// run with -benchtime=3x.
func BenchmarkBuildDir(b *testing.B) {
	src := os.Getenv("NYDUSIFY_BENCH_DIR")
	if src == "" {
		src = runtime.GOROOT()
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
