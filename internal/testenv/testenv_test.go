package testenv_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
)

// source writes an fstree tree that erofs-utils 1.5 can pack. Its
// mkfs.erofs fails on any 255-byte name ("Could not format the device :
// [Error 2] No such file or directory"; 254 bytes works), so those names are
// removed and their directory's mtime put back.
func source(t *testing.T, opts fstree.Options) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	if err := fstree.Make(src, opts); err != nil {
		t.Fatalf("Make: %v", err)
	}
	ents, err := os.ReadDir(filepath.Join(src, "names"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if len(e.Name()) == 255 {
			if err := os.Remove(filepath.Join(src, "names", e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	ts := unix.NsecToTimespec(fstree.Mtime("names").UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, "names"), []unix.Timespec{ts, ts}, 0); err != nil {
		t.Fatal(err)
	}
	return src
}

// mkfs runs mkfs.erofs with args. It never passes -T: -T sets every inode's
// mtime to the given build time (erofs-utils 1.5 TIMESTAMP_FIXED), so with
// -T0 every mtime in the image reads back as 0.
func mkfs(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		t.Skipf("mkfs.erofs not on PATH (install erofs-utils): %v", err)
	}
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		// The output is mostly "Processing X" progress lines; keep the end.
		if len(out) > 2000 {
			out = out[len(out)-2000:]
		}
		t.Fatalf("%s: %v\n...%s", cmd, err, out)
	}
}

func TestMountEROFS(t *testing.T) {
	testenv.RequireEROFS(t)
	for _, tc := range []struct {
		name string
		opts fstree.Options
	}{
		{"user tree", fstree.Options{}},
		{"root tree", fstree.Options{Root: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := source(t, tc.opts)
			img := filepath.Join(t.TempDir(), "plain.img")
			mkfs(t, img, src)
			mnt := mounttest.EROFS(t, img, nil)
			// Everything else survives mkfs.erofs and the kernel: modes
			// with setuid/setgid/sticky, 32-bit uids and gids, device
			// numbers, user/trusted/security xattrs (also on symlinks),
			// hardlink groups and nanosecond mtimes, the root's included.
			// Only directory sizes differ (EROFS reports dirent bytes).
			mounttest.RequireSame(t, src, mnt, treecmp.Options{IgnoreDirSize: true})
		})
	}
}

func TestMountEROFSWithBlobDevice(t *testing.T) {
	testenv.RequireEROFS(t)
	src := source(t, fstree.Options{Root: true})
	dir := t.TempDir()
	meta, blob := filepath.Join(dir, "meta.img"), filepath.Join(dir, "blob.img")
	mkfs(t, "--chunksize=4096", "--blobdev="+blob, meta, src)
	// Relative device paths must work too: mountcheck makes them absolute.
	t.Chdir(dir)
	mnt := mounttest.EROFS(t, meta, []string{"blob.img"})
	mounttest.RequireSame(t, src, mnt, treecmp.Options{IgnoreDirSize: true})
	testenv.FsckEROFS(t, meta, []string{blob})
}

func TestFsckExtract(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create the source tree's devices and owners")
	}
	src := source(t, fstree.Options{Root: true})
	img := filepath.Join(t.TempDir(), "plain.img")
	mkfs(t, img, src)
	testenv.FsckEROFS(t, img, nil)
	out := testenv.FsckExtract(t, img, nil)
	diffs, err := treecmp.Compare(src, out, treecmp.Options{IgnoreDirSize: true})
	if err != nil {
		t.Fatal(err)
	}
	// fsck.erofs 1.5 --extract loses xattrs, hardlinks (each name becomes
	// its own file) and setuid/setgid bits; everything else must match.
	for _, d := range diffs {
		switch {
		case strings.HasPrefix(d.Field, treecmp.FieldXattr+":") && d.Got == "absent":
		case d.Field == treecmp.FieldHardlinks && !strings.Contains(d.Got, " "):
		case d.Field == treecmp.FieldMode && d.Want[0] != '0' && d.Got[0] == '0' && d.Want[1:] == d.Got[1:]:
		case d.Field == treecmp.FieldMode && d.Want == "7777" && d.Got == "1777":
		default:
			t.Errorf("%v", d)
		}
	}
}

func TestFsckEROFSFailsOnCorruption(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img")
	mkfs(t, img, src)
	testenv.FsckEROFS(t, img, nil)

	// Flip a byte of the superblock's volume name (offset 1024+64), which
	// the superblock checksum covers. fsck.erofs 1.5 prints "<E> ...
	// superblock chksum doesn't match" and exits 0.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x5a}, 1024+64); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fsck.erofs", img).CombinedOutput()
	t.Logf("plain fsck.erofs on the corrupt image: err=%v output=%q", err, out)

	ft := run(t, func(tb testing.TB) { testenv.FsckEROFS(tb, img, nil) })
	if !ft.failed || !strings.Contains(ft.msg(), "<E>") {
		t.Errorf("FsckEROFS on a corrupt superblock: failed=%v, messages:\n%s", ft.failed, ft.msg())
	}
	ft = run(t, func(tb testing.TB) { testenv.FsckExtract(tb, img, nil) })
	if !ft.failed {
		t.Errorf("FsckExtract on a corrupt superblock did not fail; messages:\n%s", ft.msg())
	}
	ft = run(t, func(tb testing.TB) { testenv.FsckEROFS(tb, filepath.Join(src, "f"), nil) })
	if !ft.failed {
		t.Errorf("FsckEROFS on a non-image did not fail; messages:\n%s", ft.msg())
	}
}

func TestRequireRoot(t *testing.T) {
	ft := run(t, func(tb testing.TB) { testenv.RequireRoot(tb) })
	if isRoot := os.Geteuid() == 0; ft.skipped == isRoot {
		t.Errorf("RequireRoot skipped=%v as euid %d", ft.skipped, os.Geteuid())
	}
	if ft.skipped && ft.msg() != "needs root for mount(2)" {
		t.Errorf("skip reason %q", ft.msg())
	}
}

// fakeTB records failures and skips instead of reporting them, so a test can
// check that a helper fails. Everything else (TempDir, Cleanup, Context,
// logging) goes to the real test.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	failed  bool
	skipped bool
	msgs    []string
}

func (f *fakeTB) record(failed, skipped bool, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = f.failed || failed
	f.skipped = f.skipped || skipped
	f.msgs = append(f.msgs, msg)
}

func (f *fakeTB) msg() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.msgs, "\n")
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Fail()                     { f.record(true, false, "Fail") }
func (f *fakeTB) Failed() bool              { f.mu.Lock(); defer f.mu.Unlock(); return f.failed }
func (f *fakeTB) FailNow()                  { f.record(true, false, "FailNow"); runtime.Goexit() }
func (f *fakeTB) Error(args ...any)         { f.record(true, false, fmt.Sprint(args...)) }
func (f *fakeTB) Errorf(s string, a ...any) { f.record(true, false, fmt.Sprintf(s, a...)) }
func (f *fakeTB) Fatal(args ...any)         { f.record(true, false, fmt.Sprint(args...)); runtime.Goexit() }
func (f *fakeTB) Fatalf(s string, a ...any) {
	f.record(true, false, fmt.Sprintf(s, a...))
	runtime.Goexit()
}
func (f *fakeTB) Skip(args ...any) { f.record(false, true, fmt.Sprint(args...)); runtime.Goexit() }
func (f *fakeTB) Skipf(s string, a ...any) {
	f.record(false, true, fmt.Sprintf(s, a...))
	runtime.Goexit()
}
func (f *fakeTB) SkipNow()      { f.record(false, true, "SkipNow"); runtime.Goexit() }
func (f *fakeTB) Skipped() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.skipped }

// run calls fn with a fakeTB on its own goroutine, so that a Fatal or Skip
// inside fn ends only that goroutine.
func run(t *testing.T, fn func(testing.TB)) *fakeTB {
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	return ft
}

// TestMinIO builds MinIO from source if the cache has none, starts it, and
// round-trips an object through the bucket with s3cmd. .ci/run runs it
// first, alone, so the slow build happens once before the suite.
func TestMinIO(t *testing.T) {
	m := testenv.StartMinIO(t)
	src := filepath.Join(t.TempDir(), "obj")
	want := strings.Repeat("nydus blob\n", 100000)
	if err := os.WriteFile(src, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	m.S3Cmd(t, "put", src, "s3://"+m.Bucket+"/dir/obj")
	if got := m.Objects(t, ""); len(got) != 1 || got[0] != "dir/obj" {
		t.Fatalf("bucket lists %q, want [dir/obj]", got)
	}
	dst := filepath.Join(t.TempDir(), "back")
	m.S3Cmd(t, "get", "s3://"+m.Bucket+"/dir/obj", dst)
	if got, err := os.ReadFile(dst); err != nil || string(got) != want {
		t.Fatalf("object read back: %d bytes, %v", len(got), err)
	}
	if _, err := m.S3CmdErr("get", "s3://"+m.Bucket+"/absent", filepath.Join(t.TempDir(), "x")); err == nil {
		t.Fatal("s3cmd got an object that does not exist")
	}
}
