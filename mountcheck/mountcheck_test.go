package mountcheck_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/mountcheck"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

var cmpOpts = treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true}

// image is the fstree sample tree built with rafsbuild: src, the build
// output directory out holding img.meta and the blob.
type image struct{ src, out string }

func (img image) boot() string { return filepath.Join(img.out, "img.meta") }

func build(t *testing.T) image {
	t.Helper()
	dir := t.TempDir()
	img := image{src: filepath.Join(dir, "src"), out: filepath.Join(dir, "out")}
	if err := fstree.Make(img.src, fstree.Options{Root: os.Geteuid() == 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := rafsbuild.BuildDir(context.Background(), img.src, img.out, "img",
		rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x10000}); err != nil {
		t.Fatal(err)
	}
	return img
}

// views writes the blob views the kernel reads as EROFS devices.
func (img image) views(t *testing.T) []string {
	t.Helper()
	ex, err := extract.Open(img.boot(), img.out)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	views, err := ex.BlobViews(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return views
}

// tamper changes two things in a copy-free way: the source tree itself is
// altered after the build, so the mount no longer matches it. It returns
// the differences Compare must report, and nothing else.
func tamper(t *testing.T, img image) []treecmp.Diff {
	t.Helper()
	p := filepath.Join(img.src, "data/hello.txt")
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	mt := unix.NsecToTimespec(st.ModTime().UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{mt, mt}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	return []treecmp.Diff{{Path: "/data/hello.txt", Field: treecmp.FieldMode, Want: "0600", Got: fmt.Sprintf("%04o", st.Mode().Perm())}}
}

func requireDiffs(t *testing.T, got, want []treecmp.Diff) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("differences:\n%v\nwant:\n%v", got, want)
	}
}

func requireUnmounted(t *testing.T, dir string) {
	t.Helper()
	if mounted, err := mountcheck.Mounted(dir); err != nil || mounted {
		t.Errorf("%s: mounted %v (%v) after Close", dir, mounted, err)
	}
}

// TestEROFS mounts a build with the kernel: the tree equals the source;
// after the source is altered Check reports exactly that difference, and
// the mount is gone after Check returns.
func TestEROFS(t *testing.T) {
	testenv.RequireEROFS(t)
	img := build(t)
	views := img.views(t)
	dir := t.TempDir()
	mount := func() (*mountcheck.Mount, error) { return mountcheck.EROFS(dir, img.boot(), views) }
	diffs, err := mountcheck.Check(mount, img.src, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	requireDiffs(t, diffs, nil)
	requireUnmounted(t, dir)

	want := tamper(t, img)
	diffs, err = mountcheck.Check(mount, img.src, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	requireDiffs(t, diffs, want)
	requireUnmounted(t, dir)
}

// TestFUSE mounts a build lazily with imagemount over the build directory:
// the tree equals the source, a change is reported, Close unmounts and a
// second Close returns the same result.
func TestFUSE(t *testing.T) {
	testenv.RequireFUSE(t)
	img := build(t)
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: img.out}
	dir := t.TempDir()
	m, err := mountcheck.FUSE(context.Background(), imagemount.Options{MountPath: dir, Bootstrap: img.boot(), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Dir() != dir || m.Image() == nil || m.Image().Info().Blobs != 1 {
		t.Errorf("Dir %s, Image %v", m.Dir(), m.Image())
	}
	diffs, err := mountcheck.Compare(m, img.src, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	requireDiffs(t, diffs, nil)
	want := tamper(t, img)
	if diffs, err = mountcheck.Compare(m, img.src, cmpOpts); err != nil {
		t.Fatal(err)
	}
	requireDiffs(t, diffs, want)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	requireUnmounted(t, dir)
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestStale: a mount point already in the mount table is refused, and a
// mount still listed after its unmount ran is detached and reported.
func TestStale(t *testing.T) {
	testenv.RequireEROFS(t)
	img := build(t)
	views := img.views(t)
	dir := t.TempDir()
	m, err := mountcheck.EROFS(dir, img.boot(), views)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mountcheck.EROFS(dir, img.boot(), views); !errors.Is(err, mountcheck.ErrStale) {
		t.Errorf("mounting again on %s: %v, want ErrStale", dir, err)
	}
	if below, err := mountcheck.MountsBelow(filepath.Dir(dir)); err != nil || len(below) != 1 || below[0] != dir {
		t.Errorf("MountsBelow(%s) = %v, %v; want [%s]", filepath.Dir(dir), below, err, dir)
	}
	// An unmount that does nothing, as a FUSE server that died would.
	leaky := mountcheck.Adopt(dir, func() error { return nil })
	if err := leaky.Close(); !errors.Is(err, mountcheck.ErrStale) {
		t.Errorf("Close of a mount left mounted: %v, want ErrStale", err)
	}
	requireUnmounted(t, dir)
	m.Close() // its unmount fails now; the stale rule finds nothing
}

// TestEROFSErrors: zeros are refused by the kernel, whose log the error
// carries; a device that is not a regular file is refused before mount(2).
func TestEROFSErrors(t *testing.T) {
	testenv.RequireEROFS(t)
	garbage := filepath.Join(t.TempDir(), "garbage.img")
	if err := os.WriteFile(garbage, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if m, err := mountcheck.EROFS(dir, garbage, nil); err == nil || !strings.Contains(err.Error(), "kernel log tail") {
		t.Errorf("mounting zeros: %v", err)
		if m != nil {
			m.Close()
		}
	}
	if _, err := mountcheck.EROFS(dir, garbage, []string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as device: %v", err)
	}
	comma := filepath.Join(t.TempDir(), "a,b")
	os.WriteFile(comma, nil, 0o644)
	if _, err := mountcheck.EROFS(dir, garbage, []string{comma}); err == nil || !strings.Contains(err.Error(), "comma") {
		t.Errorf("a device path with a comma: %v", err)
	}
	requireUnmounted(t, dir)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// nydusify builds the real binary once for the process tests.
func nydusify(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mountcheck-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "nydusify")
		if out, err := exec.Command("go", "build", "-o", binPath, "github.com/nydus-go/nydusify/cmd/nydusify").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building nydusify: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// TestProcess supervises the real `nydusify mount`: ready on the
// "mounted at" line, then on the JSON ready event; the mount compares
// equal; Stop unmounts with SIGTERM and a zero exit, after which the
// "unmounted" event can still be read.
func TestProcess(t *testing.T) {
	testenv.RequireFUSE(t)
	img := build(t)
	bin := nydusify(t)
	args := []string{"--bootstrap", img.boot(), "--backend-type", "localfs",
		"--backend-config", fmt.Sprintf(`{"dir":%q}`, img.out)}
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", asJSON), func(t *testing.T) {
			dir := t.TempDir()
			var log strings.Builder
			p, err := mountcheck.StartProcess(t.Context(), bin, dir, args, mountcheck.ProcessOptions{JSON: asJSON, Log: &log})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			if ev := p.Ready(); ev.Name() != "ready" || ev["mount_path"] != dir || asJSON && ev["blobs"] != 1.0 {
				t.Errorf("ready event %v", ev)
			}
			mounttest.RequireSame(t, img.src, dir, cmpOpts)
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			requireUnmounted(t, dir)
			if asJSON {
				if ev, err := p.Next(t.Context()); err != nil || ev.Name() != "unmounted" {
					t.Errorf("event after Stop: %v, %v; want unmounted", ev, err)
				}
			} else if !strings.Contains(log.String(), "mounted at "+dir) {
				t.Errorf("the log lacks the ready line:\n%s", log.String())
			}
			if _, err := p.Next(t.Context()); err == nil {
				t.Error("Next after the last line: no error")
			}
		})
	}
}

// TestProcessFailures: a child that exits before mounting, one that never
// gets ready, and one that ignores the stop signal are each reported, with
// the child's stderr, and leave nothing mounted or running.
func TestProcessFailures(t *testing.T) {
	testenv.RequireFUSE(t)
	img := build(t)
	bin := nydusify(t)
	dir := t.TempDir()

	_, err := mountcheck.StartProcess(t.Context(), bin, dir, []string{"--bootstrap", img.boot(), "--backend-type", "nope", "--backend-config", "{}"}, mountcheck.ProcessOptions{})
	if err == nil || !strings.Contains(err.Error(), "exited before mounting") || !strings.Contains(err.Error(), "nope") {
		t.Errorf("bad backend: %v", err)
	}

	sleeper := filepath.Join(t.TempDir(), "sleeper")
	os.WriteFile(sleeper, []byte("#!/bin/sh\necho starting >&2\nexec sleep 60\n"), 0o755)
	begin := time.Now()
	_, err = mountcheck.StartProcess(t.Context(), sleeper, dir, nil, mountcheck.ProcessOptions{ReadyTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not ready") || !strings.Contains(err.Error(), "starting") || time.Since(begin) > 10*time.Second {
		t.Errorf("never ready: %v after %v", err, time.Since(begin))
	}

	// SIGCONT does not stop a running process: Stop must kill it after
	// StopTimeout and detach the mount its death leaves behind.
	p, err := mountcheck.StartProcess(t.Context(), bin, dir, []string{"--bootstrap", img.boot(), "--backend-type", "localfs",
		"--backend-config", fmt.Sprintf(`{"dir":%q}`, img.out)}, mountcheck.ProcessOptions{StopSignal: syscall.SIGCONT, StopTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err == nil || !strings.Contains(err.Error(), "did not exit") {
		t.Errorf("Stop of a child ignoring the signal: %v", err)
	}
	if !p.Exited() {
		t.Error("the child still runs after Stop")
	}
	requireUnmounted(t, dir)
}

// TestProcessKilled: SIGKILL leaves a dead FUSE mount behind; a new child
// on it is refused as stale unless AllowMounted, and Kill detaches it.
func TestProcessKilled(t *testing.T) {
	testenv.RequireFUSE(t)
	img := build(t)
	bin := nydusify(t)
	dir := t.TempDir()
	args := []string{"--bootstrap", img.boot(), "--backend-type", "localfs", "--backend-config", fmt.Sprintf(`{"dir":%q}`, img.out)}
	p, err := mountcheck.StartProcess(t.Context(), bin, dir, args, mountcheck.ProcessOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err == nil {
		t.Error("Wait after SIGKILL: no error")
	}
	if _, err := os.Stat(dir); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat of the dead mount: %v, want ENOTCONN", err)
	}
	if _, err := mountcheck.StartProcess(t.Context(), bin, dir, args, mountcheck.ProcessOptions{}); !errors.Is(err, mountcheck.ErrStale) {
		t.Errorf("starting on the dead mount: %v, want ErrStale", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	requireUnmounted(t, dir)
}

// TestFUSEBlocksMatchKernel: the block counts the FUSE mount reports
// (st_blocks of every entry, statfs' f_blocks, f_bsize, f_files, f_namelen)
// are the ones the kernel's EROFS driver reports for the same image.
func TestFUSEBlocksMatchKernel(t *testing.T) {
	testenv.RequireEROFS(t)
	testenv.RequireFUSE(t)
	img := build(t)
	kdir := t.TempDir()
	km, err := mountcheck.EROFS(kdir, img.boot(), img.views(t))
	if err != nil {
		t.Fatal(err)
	}
	defer km.Close()
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: img.out}
	fdir := t.TempDir()
	fm, err := mountcheck.FUSE(context.Background(), imagemount.Options{MountPath: fdir, Bootstrap: img.boot(), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()

	var kfs, ffs unix.Statfs_t
	if err := unix.Statfs(kdir, &kfs); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(fdir, &ffs); err != nil {
		t.Fatal(err)
	}
	// Kernels since 6.x report f_files as the maximum and f_ffree as the
	// rest; the inodes in use are the same either way.
	if kfs.Blocks != ffs.Blocks || kfs.Bfree != ffs.Bfree || kfs.Bsize != ffs.Bsize ||
		kfs.Files-kfs.Ffree != ffs.Files-ffs.Ffree || kfs.Namelen != ffs.Namelen {
		t.Errorf("statfs: FUSE blocks %d free %d bsize %d inodes %d namelen %d; kernel %d %d %d %d %d",
			ffs.Blocks, ffs.Bfree, ffs.Bsize, ffs.Files-ffs.Ffree, ffs.Namelen,
			kfs.Blocks, kfs.Bfree, kfs.Bsize, kfs.Files-kfs.Ffree, kfs.Namelen)
	}
	var checked, partial int
	err = filepath.Walk(kdir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(kdir, p)
		var ks, fs unix.Stat_t
		if err := unix.Lstat(p, &ks); err != nil {
			return err
		}
		if err := unix.Lstat(filepath.Join(fdir, rel), &fs); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			checked++
			if ks.Size%4096 != 0 {
				partial++
			}
		}
		if ks.Blocks != fs.Blocks {
			t.Errorf("%s (%d bytes): st_blocks %d on FUSE, %d from the kernel", rel, ks.Size, fs.Blocks, ks.Blocks)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 5 || partial == 0 {
		t.Fatalf("only %d regular files (%d not a whole number of blocks) compared", checked, partial)
	}
}
