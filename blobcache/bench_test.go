package blobcache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// BenchmarkWarmCacheRead measures what a new mount pays to serve a blob
// whose chunks are all cached already (64 MiB in 1 MiB chunks): each
// iteration opens the cache, as a mount process does, reads every chunk
// once, and closes it. The first read of each chunk in a Cache verifies it.
func BenchmarkWarmCacheRead(b *testing.B) {
	dir := b.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	os.Mkdir(src, 0o755)
	rnd := rand.New(rand.NewPCG(2, 2))
	words := []string{"alpha ", "beta ", "gamma ", "delta ", "epsilon ", "zeta "}
	for f := range 32 {
		var buf bytes.Buffer
		for buf.Len() < 2<<20 {
			buf.WriteString(words[rnd.IntN(len(words))])
			if rnd.IntN(8) == 0 {
				fmt.Fprintf(&buf, "%d ", rnd.Uint64())
			}
		}
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", f)), buf.Bytes()[:2<<20], 0o644)
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img", rafsbuild.Options{Compressor: rafs.CompressZstd})
	if err != nil {
		b.Fatal(err)
	}
	boot, _ := os.ReadFile(filepath.Join(out, res.Bootstrap))
	img, err := rafs.OpenImage(bytes.NewReader(boot), int64(len(boot)), rafs.BlobOpenerFunc(
		func(_ int, e rafs.BlobEntry) (io.ReaderAt, int64, error) {
			blob, err := os.ReadFile(filepath.Join(out, e.BlobID))
			return bytes.NewReader(blob), int64(len(blob)), err
		}))
	if err != nil {
		b.Fatal(err)
	}
	ref, _ := img.Blob(0)
	cacheDir := b.TempDir()
	ctx := context.Background()
	p := make([]byte, 1<<20)
	readAll := func() int64 {
		c, err := blobcache.Open(ctx, cacheDir, backend.NewLocalFS(out), img, 0, blobcache.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		for _, i := range ref.TableChunks() {
			loc, _ := ref.Chunk(i)
			got, err := c.ReadChunkAt(ctx, i, p[:loc.UncompressedSize], 0)
			if err != nil {
				b.Fatal(err)
			}
			n += int64(got)
		}
		c.Close()
		return n
	}
	b.SetBytes(readAll()) // fills the cache
	b.ResetTimer()
	for range b.N {
		readAll()
	}
}
