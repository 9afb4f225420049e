package zran

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treetar"
)

// benchLayer is the gzip layer the benchmarks read: NYDUSIFY_BENCH_LAYER
// (a .tar.gz file) or else the Go installation's tree, tarred and gzipped
// (as convert's benchmarks do).
func benchLayer(b *testing.B) []byte {
	b.Helper()
	path := os.Getenv("NYDUSIFY_BENCH_LAYER")
	if path == "" {
		root, err := testenv.GoRoot()
		if err != nil {
			b.Fatal(err)
		}
		path = filepath.Join(b.TempDir(), "layer.tar.gz")
		if err := treetar.WriteGzipFile(path, root); err != nil {
			b.Fatal(err)
		}
	}
	gz, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return gz
}

func klauspostGunzip(gz []byte) (int64, error) {
	r, err := kgzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, r)
}

// indexPoints is the decoding half of building an index: every restart
// point is taken with a copy of its window, as the context builder does.
func indexPoints(gz []byte) (int64, error) {
	var win [WindowSize]byte
	n := 0
	r := NewReader(bytes.NewReader(gz), func(cp Checkpoint) {
		n += copy(win[:], cp.Window)
	})
	return io.Copy(io.Discard, r)
}

// indexLayer builds the zran index of a layer as a converter does: the tar
// walked through a Builder (windows spilled to a file in dir), every
// regular file read in 1 MiB chunks, each chunk marked; it returns the
// decompressed size.
func indexLayer(gz []byte, dir string) (int64, error) {
	b, err := NewBuilder(bytes.NewReader(gz), DefaultPolicy, dir)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	tr := tar.NewReader(b)
	buf := make([]byte, 1<<20)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		for left := h.Size; h.Typeflag == tar.TypeReg && left > 0; {
			n := min(left, int64(len(buf)))
			if _, err := b.BeginChunk(uint64(len(buf))); err != nil {
				return 0, err
			}
			if _, err := io.ReadFull(tr, buf[:n]); err != nil {
				return 0, err
			}
			if _, err := b.EndChunk(); err != nil {
				return 0, err
			}
			left -= n
		}
	}
	x, err := b.Finish()
	if err != nil {
		return 0, err
	}
	return x.OutSize, nil
}

// BenchmarkIndexVsKlauspost runs klauspost's gzip reader, the zran
// decoder taking every restart point, and the whole index build
// (indexLayer), in turn on the same in-memory layer, b.N rounds each, and reports the best MB/s of each, the ratio of
// the best times and the spread (slowest/fastest − 1) of each.
// Run: go test ./zran -run XXX -bench IndexVsKlauspost -benchtime 5x
func BenchmarkIndexVsKlauspost(b *testing.B) {
	gz := benchLayer(b)
	dir := b.TempDir()
	size, err := klauspostGunzip(gz)
	if err != nil {
		b.Fatal(err)
	}
	runs := []struct {
		name string
		f    func([]byte) (int64, error)
	}{
		{"klauspost", klauspostGunzip},
		{"zran-points", indexPoints},
		{"zran-index", func(gz []byte) (int64, error) { return indexLayer(gz, dir) }},
	}
	times := make([][]time.Duration, len(runs))
	b.ResetTimer()
	for b.Loop() {
		for i, r := range runs {
			start := time.Now()
			n, err := r.f(gz)
			if err != nil || n != size {
				b.Fatalf("%s: %d bytes, %v", r.name, n, err)
			}
			times[i] = append(times[i], time.Since(start))
		}
	}
	b.StopTimer()
	best := make([]time.Duration, len(runs))
	for i, r := range runs {
		best[i] = slices.Min(times[i])
		worst := slices.Max(times[i])
		b.ReportMetric(float64(size)/best[i].Seconds()/1e6, r.name+"-MB/s")
		b.ReportMetric(float64(worst)/float64(best[i])-1, r.name+"-spread")
	}
	for i := 1; i < len(runs); i++ {
		b.ReportMetric(float64(best[0])/float64(best[i]), runs[i].name+"/klauspost")
	}
	b.Logf("%d MB in, %d MB out, %d rounds", len(gz)/1e6, size/1e6, len(times[0]))
}

// BenchmarkIndexLayer is the index build alone, with allocations: its
// memory is the decoder's fixed buffers, the tar reader's, the chunk
// buffer and the pending windows, not the layer (windows spill to dir).
func BenchmarkIndexLayer(b *testing.B) {
	gz := benchLayer(b)
	dir := b.TempDir()
	size, err := indexLayer(gz, dir)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := indexLayer(gz, dir); err != nil {
			b.Fatal(err)
		}
	}
}
