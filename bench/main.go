// Command bench converts one realistic layer with nydusify and with its
// pure-Go peer, containerd's estargz (default gzip, and zstd:chunked), in
// one run, and prints throughput (MB/s of uncompressed layer), output size,
// peak RSS and the ratios against us.
//
//	go run ./bench [-layer FILE.tar.gz] [-runs N]
//
// Without -layer it tars the Go installation (GOROOT) into a gzip layer in a
// temp dir. Each converter runs in its own child process so that peak RSS
// is its own.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treetar"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/tarstream"
)

// result is what a child run prints on stdout.
type result struct {
	Seconds  float64 `json:"seconds"`
	OutBytes int64   `json:"out_bytes"`
}

var tools = []string{"nydusify-zstd", "estargz-gzip", "estargz-zstdchunked"}

func main() {
	layer := flag.String("layer", "", "gzip-compressed layer tar (default: a tar of GOROOT)")
	runs := flag.Int("runs", 3, "runs per converter; the best is reported")
	child := flag.String("child", "", "internal: run one converter on -layer and print the result")
	flag.Parse()
	if *child != "" {
		res, err := runChild(*child, *layer)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	if err := run(*layer, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(layer string, runs int) error {
	if layer == "" {
		dir, err := os.MkdirTemp("", "nydusify-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		layer = filepath.Join(dir, "goroot.tar.gz")
		goroot, err := testenv.GoRoot()
		if err != nil {
			return err
		}
		fmt.Printf("making a layer from %s ...\n", goroot)
		if err := treetar.WriteGzipFile(layer, goroot); err != nil {
			return err
		}
	}
	usize, err := uncompressedSize(layer)
	if err != nil {
		return err
	}
	st, err := os.Stat(layer)
	if err != nil {
		return err
	}
	fmt.Printf("layer %s: %.1f MB gzip, %.1f MB uncompressed; %d CPUs; best of %d runs\n\n",
		layer, mb(st.Size()), mb(usize), runtime.NumCPU(), runs)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	type row struct {
		tool       string
		best       result
		peakRSSKiB int64
	}
	var rows []row
	for _, tool := range tools {
		r := row{tool: tool}
		for i := 0; i < runs; i++ {
			cmd := exec.Command(self, "-child", tool, "-layer", layer)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s: %w", tool, err)
			}
			var res result
			if err := json.Unmarshal(out, &res); err != nil {
				return fmt.Errorf("%s: %w", tool, err)
			}
			if i == 0 || res.Seconds < r.best.Seconds {
				r.best = res
			}
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > r.peakRSSKiB {
				r.peakRSSKiB = ru.Maxrss
			}
		}
		rows = append(rows, r)
	}
	ours := rows[0].best.Seconds
	fmt.Printf("%-22s %9s %10s %10s %12s %14s\n", "converter", "seconds", "MB/s", "output MB", "peak RSS MB", "time vs ours")
	for _, r := range rows {
		fmt.Printf("%-22s %9.2f %10.1f %10.1f %12.1f %13.2fx\n", r.tool, r.best.Seconds,
			mb(usize)/r.best.Seconds, mb(r.best.OutBytes), float64(r.peakRSSKiB)/1024, r.best.Seconds/ours)
	}
	return nil
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// runChild converts the layer once with one tool.
func runChild(tool, layer string) (result, error) {
	out, err := os.CreateTemp("", "bench-out-")
	if err != nil {
		return result{}, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	start := time.Now()
	switch tool {
	case "nydusify-zstd":
		in, err := os.Open(layer)
		if err != nil {
			return result{}, err
		}
		defer in.Close()
		zr, err := tarstream.Open(in)
		if err != nil {
			return result{}, err
		}
		defer zr.Close()
		if _, err := rafsbuild.BuildLayer(context.Background(), zr, out, rafsbuild.Options{Compressor: rafs.CompressZstd}, rafsbuild.NewChunkDict()); err != nil {
			return result{}, err
		}
	case "estargz-gzip", "estargz-zstdchunked":
		in, err := os.Open(layer)
		if err != nil {
			return result{}, err
		}
		defer in.Close()
		st, err := in.Stat()
		if err != nil {
			return result{}, err
		}
		var opts []estargz.Option
		if tool == "estargz-zstdchunked" {
			opts = append(opts, estargz.WithCompression(zstdChunked{&zstdchunked.Compressor{CompressionLevel: zstd.SpeedDefault}, &zstdchunked.Decompressor{}}))
		}
		blob, err := estargz.Build(io.NewSectionReader(in, 0, st.Size()), opts...)
		if err != nil {
			return result{}, err
		}
		defer blob.Close()
		if _, err := io.Copy(out, blob); err != nil {
			return result{}, err
		}
	default:
		return result{}, fmt.Errorf("unknown converter %q", tool)
	}
	secs := time.Since(start).Seconds()
	st, err := out.Stat()
	if err != nil {
		return result{}, err
	}
	return result{Seconds: secs, OutBytes: st.Size()}, nil
}

// zstdChunked pairs estargz's zstd:chunked compressor and decompressor,
// as estargz.WithCompression wants both.
type zstdChunked struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

func uncompressedSize(layer string) (int64, error) {
	f, err := os.Open(layer)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, zr)
}
