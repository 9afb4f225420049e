// Command mount benchmarks the lazy FUSE mount, `nydusify mount`, run as a
// child process exactly as a user runs it:
//
//	go run ./bench/mount [-runs N] [-entries N] [-tree DIR] [-json] [-keep]
//
// It measures two things:
//
//  1. Mount time of a large bootstrap: a generated tree of -entries entries
//     (small files in nested directories) is built with `nydusify build` and
//     mounted; the time runs from process start until the mount shows in
//     /proc/self/mountinfo and its root answers stat and readdir (page cache
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
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treetar"
)

// readers is the number of files read at once in every read case.
const readers = 4

// repoName is the repository the registry case converts the image into.
const repoName = "bench/image"

// row is one timed case.
type row struct {
	Case    string  `json:"case"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s,omitempty"`
	// VsPlainCold and VsPlainWarm are Seconds over the plain directory's.
	VsPlainCold float64 `json:"vs_plain_cold"`
	VsPlainWarm float64 `json:"vs_plain_warm"`
}

// report is everything measured; -json prints it as is.
type report struct {
	CPUs             int    `json:"cpus"`
	PageCacheDropped bool   `json:"page_cache_dropped"`
	Registry         string `json:"registry"`
	Runs             int    `json:"runs"`
	ReadRuns         int    `json:"read_runs"`

	Entries            int       `json:"entries"`
	BootstrapBytes     int64     `json:"bootstrap_bytes"`
	EntriesBuildSecs   float64   `json:"entries_build_seconds"`
	MountSeconds       []float64 `json:"mount_seconds"`
	MountBestSeconds   float64   `json:"mount_best_seconds"`
	MountColdSeconds   float64   `json:"mount_cold_page_cache_seconds"`
	Walk               []row     `json:"walk"`
	Tree               string    `json:"tree"`
	TreeFiles          int       `json:"tree_files"`
	TreeBytes          int64     `json:"tree_bytes"`
	TreeBootstrapBytes int64     `json:"tree_bootstrap_bytes"`
	TreeBlobBytes      int64     `json:"tree_blob_bytes"`
	TreeConvertSecs    float64   `json:"tree_convert_seconds"`
	Readers            int       `json:"readers"`
	Read               []row     `json:"read"`
}

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

// mountCases measures mount time and metadata walks on a generated tree.
func (b *bench) mountCases(ctx context.Context, rep *report, entries int) error {
	src, out := filepath.Join(b.tmp, "entries"), filepath.Join(b.tmp, "entries.out")
	b.logf("generating %d entries in %s", entries, src)
	if err := makeTree(ctx, src, entries); err != nil {
		return err
	}
	b.logf("nydusify build of %s", src)
	secs, err := b.buildImage(ctx, src, out)
	if err != nil {
		return err
	}
	rep.EntriesBuildSecs = secs
	st, err := os.Stat(filepath.Join(out, "img.meta"))
	if err != nil {
		return err
	}
	rep.BootstrapBytes = st.Size()
	localfs := b.localfsArgs(out)

	for i := 0; i < b.runs; i++ {
		err := b.withMount(ctx, localfs, b.newPath("cache"), func(mnt string, d time.Duration) error {
			rep.MountSeconds = append(rep.MountSeconds, d.Seconds())
			return nil
		})
		if err != nil {
			return err
		}
		b.logf("mount %d: %.3f s", i+1, rep.MountSeconds[i])
		rep.MountBestSeconds = best(i, rep.MountBestSeconds, rep.MountSeconds[i])
	}

	var plainCold, plainWarm, mntCold, mntWarm float64
	for i := 0; i < b.readRuns; i++ {
		b.dropCaches()
		n, cold, err := timeWalk(ctx, src)
		if err != nil {
			return err
		}
		_, warm, err := timeWalk(ctx, src)
		if err != nil {
			return err
		}
		rep.Entries = n
		b.logf("walk of %s: %d entries, %.2f s cold, %.2f s warm", src, n, cold, warm)
		plainCold, plainWarm = best(i, plainCold, cold), best(i, plainWarm, warm)

		b.dropCaches()
		err = b.withMount(ctx, localfs, b.newPath("cache"), func(mnt string, d time.Duration) error {
			rep.MountColdSeconds = best(i, rep.MountColdSeconds, d.Seconds())
			mn, cold, err := timeWalk(ctx, mnt)
			if err != nil {
				return err
			}
			_, warm, err := timeWalk(ctx, mnt)
			if err != nil {
				return err
			}
			if mn != n {
				return fmt.Errorf("walk of the mount saw %d entries, the source has %d", mn, n)
			}
			b.logf("mount (%.3f s, page cache %s), walk: %.2f s first, %.2f s second", d.Seconds(), coldWord(b.dropped), cold, warm)
			mntCold, mntWarm = best(i, mntCold, cold), best(i, mntWarm, warm)
			return nil
		})
		if err != nil {
			return err
		}
	}
	rep.Walk = ratios([]row{
		{Case: "plain dir, page cache " + coldWord(b.dropped)},
		{Case: "plain dir, page cache warm"},
		{Case: "mount, first walk (" + coldWord(b.dropped) + ")"},
		{Case: "mount, second walk (kernel caches warm)"},
	}, []float64{plainCold, plainWarm, mntCold, mntWarm}, 0)
	return nil
}

// readCases measures full reads of tree, plain and through the mount. The
// image is the tree as a one-layer OCI image converted by `nydusify
// convert`, once into an OCI layout (the localfs cases mount it by
// reference, blobs read from the layout) and once into a registry.
func (b *bench) readCases(ctx context.Context, rep *report, tree string) error {
	srcLayout := filepath.Join(b.tmp, "tree.oci")
	src := "oci:" + srcLayout + ":tree"
	b.logf("writing %s as a one-layer OCI image", tree)
	if err := treetar.WriteLayout(tree, srcLayout, "tree"); err != nil {
		return err
	}
	local := "oci:" + filepath.Join(b.tmp, "tree.nydus") + ":tree"
	conv, secs, err := b.convert(ctx, src, local)
	if err != nil {
		return err
	}
	rep.Tree, rep.TreeConvertSecs = tree, secs
	if len(conv.Platforms) != 1 {
		return fmt.Errorf("convert made %d platform images, want 1", len(conv.Platforms))
	}
	rep.TreeBootstrapBytes, rep.TreeBlobBytes = int64(conv.Platforms[0].BootstrapSize), conv.Platforms[0].BlobBytes

	// want is what every read must find: the plain directory's totals.
	var want readStats
	// read times cold or warm reads of root, checking what it read.
	read := func(what, root string, cold bool) (float64, error) {
		if cold {
			b.dropCaches()
		}
		got, secs, err := timeRead(ctx, root)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		if want.files == 0 {
			want = got
		} else if got != want {
			return 0, fmt.Errorf("%s: read %d files, %d bytes; the plain directory has %d files, %d bytes", what, got.files, got.bytes, want.files, want.bytes)
		}
		b.logf("%s: %.2f s, %.1f MB/s", what, secs, mb(got.bytes)/secs)
		return secs, nil
	}
	// mounted reads the image through a fresh mount with backendArgs and
	// chunk cache directory cache.
	mounted := func(what string, backendArgs []string, cache string) (float64, error) {
		var secs float64
		err := b.withMount(ctx, backendArgs, cache, func(mnt string, d time.Duration) error {
			var err error
			secs, err = read(what, mnt, true)
			return err
		})
		return secs, err
	}

	var plainCold, plainWarm, localCold, regCold, cacheWarm float64
	for i := 0; i < b.readRuns; i++ {
		cold, err := read("plain dir, page cache "+coldWord(b.dropped), tree, true)
		if err != nil {
			return err
		}
		warm, err := read("plain dir, page cache warm", tree, false)
		if err != nil {
			return err
		}
		plainCold, plainWarm = best(i, plainCold, cold), best(i, plainWarm, warm)
	}
	rep.TreeFiles, rep.TreeBytes = want.files, want.bytes

	localfs := []string{"--target", local}
	var cache string
	for i := 0; i < b.readRuns; i++ {
		cache = b.newPath("cache")
		secs, err := mounted("mount localfs, cold chunk cache", localfs, cache)
		if err != nil {
			return err
		}
		localCold = best(i, localCold, secs)
	}
	for i := 0; i < b.readRuns; i++ {
		secs, err := mounted("mount localfs, warm chunk cache (remounted)", localfs, cache)
		if err != nil {
			return err
		}
		cacheWarm = best(i, cacheWarm, secs)
	}

	reg, err := b.startRegistry()
	if err != nil {
		return err
	}
	defer reg.stop()
	rep.Registry = reg.kind
	remote := reg.host + "/" + repoName + ":tree"
	if _, _, err := b.convert(ctx, src, remote, "--plain-http"); err != nil {
		return err
	}
	regArgs := []string{"--target", remote, "--plain-http"}
	for i := 0; i < b.readRuns; i++ {
		secs, err := mounted("mount registry, cold chunk cache", regArgs, b.newPath("cache"))
		if err != nil {
			return err
		}
		regCold = best(i, regCold, secs)
	}

	rep.Read = ratios([]row{
		{Case: "a. plain dir, page cache " + coldWord(b.dropped)},
		{Case: "a. plain dir, page cache warm"},
		{Case: "b. mount localfs, cold chunk cache"},
		{Case: "c. mount registry, cold chunk cache"},
		{Case: "d. mount, warm chunk cache (remounted)"},
	}, []float64{plainCold, plainWarm, localCold, regCold, cacheWarm}, want.bytes)
	return nil
}

// best folds run i's seconds v into the best so far.
func best(i int, cur, v float64) float64 {
	if i == 0 || v < cur {
		return v
	}
	return cur
}

// ratios fills in rows from secs, the first two being the plain
// directory's cold and warm times, and MB/s of size bytes when size > 0.
func ratios(rows []row, secs []float64, size int64) []row {
	for i := range rows {
		rows[i].Seconds = secs[i]
		rows[i].VsPlainCold = secs[i] / secs[0]
		rows[i].VsPlainWarm = secs[i] / secs[1]
		if size > 0 {
			rows[i].MBps = mb(size) / secs[i]
		}
	}
	return rows
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// coldWord says what state a "cold" case's page cache was in.
func coldWord(dropped bool) string {
	if dropped {
		return "cold"
	}
	return "NOT dropped"
}

// newPath names a fresh path below the temporary directory.
func (b *bench) newPath(prefix string) string {
	b.seq++
	return filepath.Join(b.tmp, fmt.Sprintf("%s-%d", prefix, b.seq))
}

func (b *bench) localfsArgs(out string) []string {
	return []string{"--backend-type", "localfs", "--backend-config", fmt.Sprintf(`{"dir":%q}`, out),
		"--bootstrap", filepath.Join(out, "img.meta")}
}

// dropCaches drops the page cache if the kernel let us at the start.
func (b *bench) dropCaches() {
	if b.dropped && !dropCaches() {
		b.logf("warning: dropping the page cache failed this time")
	}
}

// dropCaches writes dirty pages back and drops the page, dentry and inode
// caches, reporting whether the kernel allowed it.
func dropCaches() bool {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0) == nil
}

// buildImage runs `nydusify build` of src into out (bootstrap img.meta) and
// returns its wall time.
func (b *bench) buildImage(ctx context.Context, src, out string) (float64, error) {
	secs, err := b.runLogged(ctx, "build", "--source-dir", src, "--output-dir", out, "--name", "img")
	if err == nil {
		b.logf("built in %.1f s", secs)
	}
	return secs, err
}

// convert runs `nydusify convert` of source into target (extra flags
// appended) and returns its report and wall time.
func (b *bench) convert(ctx context.Context, source, target string, extra ...string) (*converter.Report, float64, error) {
	reportPath := b.newPath("convert") + ".json"
	args := append([]string{"convert", "--source", source, "--target", target, "--output-json", reportPath}, extra...)
	secs, err := b.runLogged(ctx, args...)
	if err != nil {
		return nil, 0, err
	}
	data, err := os.ReadFile(reportPath)
	if err != nil {
		return nil, 0, err
	}
	var rep converter.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, 0, fmt.Errorf("convert report %s: %w", reportPath, err)
	}
	b.logf("converted %s to %s in %.1f s", source, target, secs)
	return &rep, secs, nil
}

// runLogged runs the nydusify binary with args, its output in a log file
// whose tail goes into the error, and returns its wall time.
func (b *bench) runLogged(ctx context.Context, args ...string) (float64, error) {
	logPath := b.newPath(args[0]) + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("nydusify %s: %w%s", strings.Join(args, " "), err, logTail(logPath))
	}
	return time.Since(start).Seconds(), nil
}

// makeTree writes a deterministic tree of n entries below dir: directories
// d000, d001, … each holding up to 32 directories of 100 files of 0–1023
// bytes whose content depends only on the file's index.
func makeTree(ctx context.Context, dir string, n int) error {
	const filesPerDir, dirsPerDir = 100, 32
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	var leaf string
	for i, made := 0, 0; made < n; i++ {
		if i%filesPerDir == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			d := i / filesPerDir
			top := filepath.Join(dir, fmt.Sprintf("d%03d", d/dirsPerDir))
			if d%dirsPerDir == 0 {
				if err := os.Mkdir(top, 0o755); err != nil {
					return err
				}
				made++
			}
			leaf = filepath.Join(top, fmt.Sprintf("s%02d", d%dirsPerDir))
			if err := os.Mkdir(leaf, 0o755); err != nil {
				return err
			}
			made++
		}
		line := fmt.Sprintf("file %d of the mount benchmark\n", i)
		size := i * 131 % 1024
		data := strings.Repeat(line, size/len(line)+1)[:size]
		if err := os.WriteFile(filepath.Join(leaf, fmt.Sprintf("f%06d", i)), []byte(data), 0o644); err != nil {
			return err
		}
		made++
	}
	return nil
}

// timeWalk walks root as `ls -lR` does without its xattr queries: ReadDir
// of every directory and Lstat of every entry. It returns the entries seen
// (root excluded) and the seconds taken.
func timeWalk(ctx context.Context, root string) (int, float64, error) {
	start := time.Now()
	n := 0
	var walk func(dir string) error
	walk = func(dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			st, err := os.Lstat(p)
			if err != nil {
				return err
			}
			n++
			if st.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk(root)
	return n, time.Since(start).Seconds(), err
}

type readStats struct {
	files int
	bytes int64
}

// timeRead reads every regular file below root to the end, readers files
// at a time, and returns what it read and the seconds taken, walk included.
func timeRead(ctx context.Context, root string) (readStats, float64, error) {
	start := time.Now()
	paths := make(chan string, 256)
	var (
		files, bytes atomic.Int64
		errOnce      sync.Once
		firstErr     error
		failed       = make(chan struct{})
		wg           sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() {
			firstErr = err
			close(failed)
		})
	}
	for range readers {
		wg.Go(func() {
			for p := range paths {
				n, err := readFile(p)
				if err != nil {
					fail(err)
					continue
				}
				files.Add(1)
				bytes.Add(n)
			}
		})
	}
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		select {
		case paths <- p:
			return nil
		case <-failed:
			return errors.New("a read failed")
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(paths)
	wg.Wait()
	secs := time.Since(start).Seconds()
	if firstErr != nil {
		return readStats{}, 0, firstErr
	}
	if walkErr != nil {
		return readStats{}, 0, walkErr
	}
	return readStats{files: int(files.Load()), bytes: bytes.Load()}, secs, nil
}

func readFile(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	if err != nil {
		return n, fmt.Errorf("reading %s: %w", p, err)
	}
	return n, nil
}

// mountProc is one running `nydusify mount`.
type mountProc struct {
	cmd  *exec.Cmd
	mnt  string
	log  string
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, once done
}

// withMount runs `nydusify mount` with args on a fresh mountpoint and cache
// directory cache, waits until the mount is usable, calls fn with the
// mountpoint and the time from process start until then, and unmounts with
// SIGINT. On any failure the process is killed and the mount detached.
func (b *bench) withMount(ctx context.Context, args []string, cache string, fn func(mnt string, d time.Duration) error) error {
	mnt := b.newPath("mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	m := &mountProc{mnt: mnt, log: mnt + ".log", done: make(chan struct{})}
	logf, err := os.Create(m.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	m.cmd = exec.Command(b.bin, append([]string{"mount", "--mount-path", mnt, "--cache-dir", cache}, args...)...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	start := time.Now()
	if err := m.cmd.Start(); err != nil {
		return err
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	if err := m.waitReady(ctx); err != nil {
		m.abort()
		return err
	}
	if err := fn(mnt, time.Since(start)); err != nil {
		m.abort()
		return fmt.Errorf("%w%s", err, logTail(m.log))
	}
	return m.stop()
}

// waitReady polls /proc/self/mountinfo until the mount shows, then stats
// the mountpoint and reads its root directory.
func (m *mountProc) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-m.done:
			return fmt.Errorf("nydusify mount exited before mounting (%v)%s", m.err, logTail(m.log))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		ok, err := isMounted(m.mnt)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not mounted after 2 minutes%s", m.mnt, logTail(m.log))
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := os.Stat(m.mnt + "/"); err != nil {
		return err
	}
	_, err := os.ReadDir(m.mnt)
	return err
}

// stop sends SIGINT, waits for the process to exit and checks that it
// exited cleanly and left nothing mounted.
func (m *mountProc) stop() error {
	if err := m.cmd.Process.Signal(os.Interrupt); err != nil {
		m.abort()
		return err
	}
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.abort()
		return fmt.Errorf("nydusify mount did not exit within 30 s of SIGINT%s", logTail(m.log))
	}
	if m.err != nil {
		m.abort()
		return fmt.Errorf("nydusify mount: %w%s", m.err, logTail(m.log))
	}
	if ok, err := isMounted(m.mnt); err != nil || ok {
		m.abort()
		return fmt.Errorf("%s still mounted after nydusify mount exited (%v)", m.mnt, err)
	}
	return nil
}

// abort kills the process and detaches the mount if it is still there.
func (m *mountProc) abort() {
	m.cmd.Process.Kill()
	<-m.done
	if ok, _ := isMounted(m.mnt); ok {
		syscall.Unmount(m.mnt, syscall.MNT_DETACH)
	}
}

var mountinfoUnescape = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)

// isMounted reports whether a mount at path shows in /proc/self/mountinfo.
func isMounted(path string) (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && mountinfoUnescape.Replace(f[4]) == path {
			return true, nil
		}
	}
	return false, nil
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

// reg is a running registry.
type reg struct {
	kind string // what serves it
	host string // 127.0.0.1:PORT
	stop func()
}

// startRegistry starts Debian's docker-registry with filesystem storage
// (configured as internal/testenv does) when it is installed, else
// go-containerregistry's registry in-process.
func (b *bench) startRegistry() (*reg, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return b.startInProcessRegistry()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	host := l.Addr().String()
	l.Close()
	dir := b.newPath("registry")
	storage := filepath.Join(dir, "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp: {addr: %s}\n",
		storage, host)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting docker-registry: %w", err)
	}
	r := &reg{kind: "docker-registry " + bin, host: host, stop: func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				b.logf("started %s on %s", r.kind, host)
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("docker-registry on %s did not answer within 10 s: %v%s", host, err, logTail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startInProcessRegistry serves go-containerregistry's registry on
// 127.0.0.1 with blobs stored as files.
func (b *bench) startInProcessRegistry() (*reg, error) {
	h := fileBlobs(b.newPath("registry"))
	if err := os.Mkdir(string(h), 0o755); err != nil {
		return nil, err
	}
	srv := httptest.NewServer(registry.New(registry.WithBlobHandler(h), registry.Logger(log.New(io.Discard, "", 0))))
	r := &reg{kind: "go-containerregistry pkg/registry (in-process)", host: srv.Listener.Addr().String(), stop: srv.Close}
	b.logf("started %s on %s", r.kind, r.host)
	return r, nil
}

// fileBlobs is a registry.BlobHandler keeping each blob in a file named by
// its hex digest. Unlike registry.NewDiskBlobHandler it does not re-hash the
// blob on every request, and serves ranges from the file.
type fileBlobs string

func (d fileBlobs) path(h v1.Hash) string { return filepath.Join(string(d), h.Hex) }

func (d fileBlobs) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(d.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, registry.ErrNotFound
	}
	return f, err
}

func (d fileBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	st, err := os.Stat(d.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, registry.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Put stores the blob; the registry checks its digest while it is read.
func (d fileBlobs) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	f, err := os.CreateTemp(string(d), "upload-")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), d.path(h))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func printReport(w io.Writer, r *report) {
	cache := "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every cold case"
	if !r.PageCacheDropped {
		cache = "page cache could NOT be dropped: the cold cases ran warm"
	}
	fmt.Fprintf(w, "%d CPUs; %s\n\n", r.CPUs, cache)

	fmt.Fprintf(w, "== mount: bootstrap of %d entries (%.1f MB, built in %.1f s) ==\n", r.Entries, mb(r.BootstrapBytes), r.EntriesBuildSecs)
	runs := make([]string, len(r.MountSeconds))
	for i, s := range r.MountSeconds {
		runs[i] = fmt.Sprintf("%.3f", s)
	}
	fmt.Fprintf(w, "mount time until usable, page cache warm: %.3f s best of %d (%s)\n", r.MountBestSeconds, r.Runs, strings.Join(runs, ", "))
	fmt.Fprintf(w, "mount time until usable, page cache %s:  %.3f s\n\n", coldWord(r.PageCacheDropped), r.MountColdSeconds)
	fmt.Fprintf(w, "metadata walk (ReadDir + Lstat), best of %d  %9s %14s %14s\n", r.ReadRuns, "seconds", "vs plain cold", "vs plain warm")
	for _, x := range r.Walk {
		fmt.Fprintf(w, "%-43s %9.3f %13.2fx %13.2fx\n", x.Case, x.Seconds, x.VsPlainCold, x.VsPlainWarm)
	}

	fmt.Fprintf(w, "\n== full read of %s: %d files, %.1f MB; bootstrap %.1f MB, blob %.1f MB zstd, converted in %.1f s ==\n",
		r.Tree, r.TreeFiles, mb(r.TreeBytes), mb(r.TreeBootstrapBytes), mb(r.TreeBlobBytes), r.TreeConvertSecs)
	fmt.Fprintf(w, "%d readers, walk included; registry: %s\n", r.Readers, r.Registry)
	fmt.Fprintf(w, "%-43s %9s %9s %14s %14s\n", fmt.Sprintf("case, best of %d", r.ReadRuns), "seconds", "MB/s", "vs plain cold", "vs plain warm")
	for _, x := range r.Read {
		fmt.Fprintf(w, "%-43s %9.2f %9.1f %13.2fx %13.2fx\n", x.Case, x.Seconds, x.MBps, x.VsPlainCold, x.VsPlainWarm)
	}
}
