// Command mount benchmarks the lazy FUSE mount, `nydusify mount`, run as a
// child process exactly as a user runs it:
//
//	go run ./bench/mount [-runs N] [-entries N] [-tree DIR] [-json] [-keep]
//
// It measures two things:
//
//  1. Mount time of a large bootstrap: a generated tree of -entries entries
//     (small files in nested directories) is built with `nydusify build` and
//     mounted; the time runs from process start until it says "mounted
//     at", the mount shows in /proc/self/mountinfo and its root answers
//     stat and readdir (page cache
//     warm, and once with the page cache dropped). Then a full metadata walk
//     (ReadDir of every directory, Lstat of every entry) of the mount, twice,
//     against the same walk of the source directory.
//  2. Full recursive read of a realistic image: -tree (default: the Go
//     installation) as a one-layer OCI image, converted with `nydusify
//     convert` (zstd) into an OCI layout and into a real registry on
//     127.0.0.1. Every regular file is read to the end by a fixed pool of
//     readers from the plain directory (page cache cold and warm), and
//     through `nydusify mount --target`: the layout (localfs backend) with a
//     cold chunk cache, the registry with a cold chunk cache, and the layout
//     remounted over the warm chunk cache. Times are compared with the plain
//     directory's.
//
// Mount time is the best of -runs (default 3); every walk and read case runs
// once, or -runs times when -runs is given, and its best is reported. It
// needs root: `nydusify mount` calls mount(2) itself. "Cold" means the
// page cache was dropped (sync; echo 3 > /proc/sys/vm/drop_caches) right
// before the timed step; the output says whether that worked. The registry
// is Debian's docker-registry when installed, else go-containerregistry's
// in-process registry. Progress goes to stderr, results to stdout.
//
// The files follow the concerns: main.go (flags, the run), cases.go (what
// is measured, in order), generate.go (the generated tree, `nydusify
// build` and `convert`), registry.go (the registry), mount.go (each mount,
// supervised by mountcheck.StartProcess, the supervisor the CLI's mount
// tests use too), timing.go (walks, reads, dropping the page cache) and
// report.go (rows, ratios, the printed table).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/nydus-go/nydusify/internal/testenv"
)

// readers is the number of files read at once in every read case.
const readers = 4

// repoName is the repository the registry case converts the image into.
const repoName = "bench/image"

func main() {
	runs := flag.Int("runs", 3, "mount-time runs (best reported); when given, also the runs of every walk and read case")
	entries := flag.Int("entries", 100000, "entries (files and directories) of the generated tree for the mount-time case")
	goroot, _ := testenv.GoRoot() // without a go command, -tree must be given
	tree := flag.String("tree", goroot, "directory read fully through the mount")
	jsonOut := flag.Bool("json", false, "print the results as JSON")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	flag.Parse()
	readRuns := 1
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "runs" {
			readRuns = *runs
		}
	})
	if *runs < 1 || *entries < 1 || *tree == "" {
		fmt.Fprintln(os.Stderr, "bench/mount: -runs and -entries must be positive and -tree set")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/mount: needs root: `nydusify mount` calls mount(2) itself (FUSE without fusermount); run it as root")
		os.Exit(2)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Fprintln(os.Stderr, "bench/mount: no /dev/fuse:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{runs: *runs, readRuns: readRuns, start: time.Now()}
	rep, err := b.run(ctx, *entries, *tree, *keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/mount:", err)
		os.Exit(1)
	}
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return
	}
	printReport(os.Stdout, rep)
}

type bench struct {
	runs, readRuns int
	start          time.Time
	tmp            string // temporary directory, symlinks resolved
	bin            string // the nydusify binary
	dropped        bool   // the page cache could be dropped
	seq            int    // numbers the paths newPath makes
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context, entries int, tree string, keep bool) (*report, error) {
	tmp, err := os.MkdirTemp("", "nydusify-bench-mount-")
	if err != nil {
		return nil, err
	}
	if keep {
		defer b.logf("kept %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if b.tmp, err = filepath.EvalSymlinks(tmp); err != nil {
		return nil, err
	}
	b.bin = filepath.Join(b.tmp, "nydusify")
	b.logf("building %s", b.bin)
	build := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "github.com/nydus-go/nydusify/cmd/nydusify")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("go build: %w", err)
	}
	b.dropped = dropCaches()
	if !b.dropped {
		b.logf("could not drop the page cache: every case runs with it warm")
	}
	rep := &report{CPUs: runtime.NumCPU(), PageCacheDropped: b.dropped, Runs: b.runs, ReadRuns: b.readRuns, Readers: readers}
	if err := b.mountCases(ctx, rep, entries); err != nil {
		return nil, err
	}
	if err := b.readCases(ctx, rep, tree); err != nil {
		return nil, err
	}
	return rep, nil
}

// newPath names a fresh path below the temporary directory.
func (b *bench) newPath(prefix string) string {
	b.seq++
	return filepath.Join(b.tmp, fmt.Sprintf("%s-%d", prefix, b.seq))
}

// logTail returns the end of a child's log, for error messages.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return "\n" + path + ":\n" + string(data)
}
