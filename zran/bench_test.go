package zran

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
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
// (indexLayer), in turn on the same in-memory layer, b.N rounds each. For
// each it reports the best MB/s by wall time and by process CPU time
// (user+sys, which a busy machine disturbs less), the spread of the wall
// times (slowest/fastest − 1), and the ratios of the best times to
// klauspost's (above 1: faster than klauspost).
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
	wall := make([][]time.Duration, len(runs))
	cpu := make([][]time.Duration, len(runs))
	b.ResetTimer()
	for b.Loop() {
		for i, r := range runs {
			runtime.GC()
			start, startCPU := time.Now(), cpuTime(b)
			n, err := r.f(gz)
			if err != nil || n != size {
				b.Fatalf("%s: %d bytes, %v", r.name, n, err)
			}
			wall[i] = append(wall[i], time.Since(start))
			cpu[i] = append(cpu[i], cpuTime(b)-startCPU)
		}
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	for i, r := range runs {
		bw, bc := slices.Min(wall[i]), slices.Min(cpu[i])
		b.ReportMetric(mbps(bw), r.name+"-MB/s")
		b.ReportMetric(mbps(bc), r.name+"-cpu-MB/s")
		b.ReportMetric(float64(slices.Max(wall[i]))/float64(bw)-1, r.name+"-spread")
		if i > 0 {
			b.ReportMetric(float64(slices.Min(wall[0]))/float64(bw), r.name+"/klauspost")
			b.ReportMetric(float64(slices.Min(cpu[0]))/float64(bc), r.name+"/klauspost-cpu")
		}
	}
	b.Logf("%d MB in, %d MB out, %d rounds", len(gz)/1e6, size/1e6, len(wall[0]))
}

// cpuTime is the process's user+sys CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
