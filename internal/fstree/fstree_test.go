package fstree_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/treecmp"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create device nodes, chown and set trusted.* xattrs")
	}
}

func makeTree(t *testing.T, opts fstree.Options) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := fstree.Make(dir, opts); err != nil {
		t.Fatalf("Make: %v", err)
	}
	return dir
}

func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func xattr(t *testing.T, path, name string) []byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	return buf[:n]
}

func TestMakeIsDeterministic(t *testing.T) {
	opts := fstree.Options{Root: os.Geteuid() == 0}
	a, b := makeTree(t, opts), makeTree(t, opts)
	diffs, err := treecmp.Compare(a, b, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("two Make calls differ: %v", d)
	}
}

func TestMakeRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fstree.Make(dir, fstree.Options{}); err == nil {
		t.Fatal("Make into a non-empty directory succeeded")
	}
}

func TestMakeTree(t *testing.T) {
	root := makeTree(t, fstree.Options{})
	p := func(rel string) string { return filepath.Join(root, rel) }

	// Every entry carries the documented mtime, with non-zero nanoseconds.
	n := 0
	err := filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			rel = ""
		}
		st := lstat(t, path)
		if rel == "hard/two/second" || rel == "hard/three/third" {
			rel = "hard/one/original" // one inode, one mtime
		}
		want := fstree.Mtime(rel)
		if st.Mtim.Sec != want.Unix() || st.Mtim.Nsec != int64(want.Nanosecond()) || st.Mtim.Nsec == 0 {
			t.Errorf("%s: mtime %d.%09d, want %d.%09d (non-zero ns)", rel, st.Mtim.Sec, st.Mtim.Nsec, want.Unix(), want.Nanosecond())
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < fstree.BigDirEntries+50 {
		t.Errorf("tree has %d entries, want at least %d", n, fstree.BigDirEntries+50)
	}

	sizes := map[string]int64{
		"data/empty":      0,
		"data/4095":       4095,
		"data/4096":       4096,
		"data/4097":       4097,
		"data/random.bin": fstree.RandomSize,
		"data/sparse":     fstree.SparseSize,
		"dedup/a.bin":     fstree.DedupBlock * fstree.DedupBlocks,
		"modes/0000":      0,
	}
	for rel, want := range sizes {
		if st := lstat(t, p(rel)); st.Size != want {
			t.Errorf("%s: size %d, want %d", rel, st.Size, want)
		}
	}

	a, err := os.ReadFile(p("dedup/a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p("dedup/b.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("dedup/a.bin and dedup/b.bin differ")
	}
	for i := 1; i < fstree.DedupBlocks; i++ {
		if !bytes.Equal(a[:fstree.DedupBlock], a[i*fstree.DedupBlock:(i+1)*fstree.DedupBlock]) {
			t.Errorf("dedup/a.bin block %d differs from block 0", i)
		}
	}

	st := lstat(t, p("data/sparse"))
	if st.Blocks*512 >= 1<<20 {
		t.Errorf("data/sparse allocates %d bytes; want it sparse", st.Blocks*512)
	}
	sparse, err := os.ReadFile(p("data/sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(sparse, []byte("tail after hole\n!")) || sparse[0] != 0 {
		t.Error("data/sparse lacks its tail or does not start with a hole")
	}

	// The big directory's EROFS dirents (12 bytes + name each) span many blocks.
	ents, err := os.ReadDir(p("bigdir"))
	if err != nil {
		t.Fatal(err)
	}
	direntBytes := 0
	for _, e := range ents {
		direntBytes += 12 + len(e.Name())
	}
	if len(ents) != fstree.BigDirEntries || direntBytes < 20*4096 {
		t.Errorf("bigdir: %d entries, %d dirent bytes; want %d entries over 20 blocks", len(ents), direntBytes, fstree.BigDirEntries)
	}

	names, err := os.ReadDir(p("names"))
	if err != nil {
		t.Fatal(err)
	}
	var n255, utf255, bang, dash bool
	for _, e := range names {
		name := e.Name()
		n255 = n255 || len(name) == 255 && name[0] == 'L'
		utf255 = utf255 || len(name) == 255 && strings.HasPrefix(name, "名")
		bang = bang || name[0] == '!'
		dash = dash || name[0] == '-'
	}
	if !n255 || !utf255 || !bang || !dash {
		t.Errorf("names/: 255-byte ascii %v, 255-byte utf-8 %v, '!' %v, '-' %v; want all", n255, utf255, bang, dash)
	}

	links := map[string]string{
		"links/relative": "../data/hello.txt",
		"links/absolute": "/etc/passwd",
		"links/dangling": "does/not/exist",
		"links/long":     fstree.LongSymlinkTarget,
	}
	for rel, want := range links {
		got, err := os.Readlink(p(rel))
		if err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", rel, got, err, want)
		}
	}
	if len(fstree.LongSymlinkTarget) != 1000 {
		t.Errorf("long target is %d bytes, want 1000", len(fstree.LongSymlinkTarget))
	}

	h1, h2, h3 := lstat(t, p("hard/one/original")), lstat(t, p("hard/two/second")), lstat(t, p("hard/three/third"))
	if h1.Nlink != 3 || h1.Ino != h2.Ino || h1.Ino != h3.Ino {
		t.Errorf("hardlink group: nlink %d, inodes %d %d %d", h1.Nlink, h1.Ino, h2.Ino, h3.Ino)
	}

	modes := map[string]uint32{
		"modes/setuid":     unix.S_IFREG | 0o4755,
		"modes/setgid":     unix.S_IFREG | 0o2755,
		"modes/all-bits":   unix.S_IFREG | 0o7777,
		"modes/0600":       unix.S_IFREG | 0o600,
		"modes/0000":       unix.S_IFREG,
		"modes/sticky":     unix.S_IFDIR | 0o1777,
		"modes/setgid-dir": unix.S_IFDIR | 0o2755,
		"a/b/c":            unix.S_IFDIR | 0o700,
		"special/fifo":     unix.S_IFIFO | 0o644,
	}
	for rel, want := range modes {
		if st := lstat(t, p(rel)); st.Mode != want {
			t.Errorf("%s: mode %o, want %o", rel, st.Mode, want)
		}
	}

	for _, rel := range []string{"xattrs/file", "xattrs/dir"} {
		if v := xattr(t, p(rel), "user.empty"); len(v) != 0 {
			t.Errorf("%s user.empty = %q", rel, v)
		}
		if v := xattr(t, p(rel), "user.big"); len(v) != 1000 {
			t.Errorf("%s user.big has %d bytes, want 1000", rel, len(v))
		}
	}
}

func TestMakeRootTree(t *testing.T) {
	requireRoot(t)
	root := makeTree(t, fstree.Options{Root: true})
	p := func(rel string) string { return filepath.Join(root, rel) }

	devs := map[string]struct {
		typ          uint32
		major, minor uint32
	}{
		"special/null":    {unix.S_IFCHR, 1, 3},
		"special/bigchar": {unix.S_IFCHR, 259, 70000},
		"special/block":   {unix.S_IFBLK, 7, 200},
	}
	for rel, want := range devs {
		st := lstat(t, p(rel))
		if st.Mode&unix.S_IFMT != want.typ || unix.Major(st.Rdev) != want.major || unix.Minor(st.Rdev) != want.minor {
			t.Errorf("%s: mode %o rdev %d:%d, want type %o %d:%d", rel, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), want.typ, want.major, want.minor)
		}
	}

	owners := map[string][2]uint32{
		"owners/max":         {fstree.MaxUID, fstree.MaxUID},
		"owners/above-16bit": {65536, 70000},
		"owners/dir":         {123456789, 987654321},
		"owners/link":        {4000000000, 4000000001},
	}
	for rel, want := range owners {
		if st := lstat(t, p(rel)); st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, want[0], want[1])
		}
	}
	if st := lstat(t, p("owners/mixed")); st.Mode != unix.S_IFREG|0o4750 {
		t.Errorf("owners/mixed: mode %o, want setuid kept after chown", st.Mode)
	}
	if st := lstat(t, p("modes/0000")); st.Size == 0 {
		t.Error("modes/0000 has no content in the root tree")
	}

	if v := xattr(t, p("modes/cap-bin"), "security.capability"); !bytes.Equal(v, fstree.CapabilityV2) {
		t.Errorf("security.capability = %x, want %x", v, fstree.CapabilityV2)
	}
	if v := xattr(t, p("xattrs/file"), "trusted.foo"); string(v) != "bar" {
		t.Errorf("trusted.foo = %q", v)
	}
	if v := xattr(t, p("xattrs/link"), "trusted.link"); len(v) == 0 {
		t.Error("symlink xattrs/link has no trusted.link")
	}
}

func TestMakeBig(t *testing.T) {
	root := makeTree(t, fstree.Options{Big: true})
	path := filepath.Join(root, "big/sparse-5g")
	st := lstat(t, path)
	if st.Size != fstree.BigSize {
		t.Fatalf("size %d, want %d", st.Size, int64(fstree.BigSize))
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("allocates %d bytes; want sparse", st.Blocks*512)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, want := range map[int64]string{0: "start", fstree.BigSize / 2: "middle", fstree.BigSize - 3: "end"} {
		buf := make([]byte, len(want))
		if _, err := f.ReadAt(buf, off); err != nil || string(buf) != want {
			t.Errorf("at %d: %q (%v), want %q", off, buf, err, want)
		}
	}
}

func TestMakeSocket(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "sock"), filepath.Join(long, "sock")} {
		if err := fstree.MakeSocket(path); err != nil {
			t.Fatalf("MakeSocket(%d-byte path): %v", len(path), err)
		}
		if st := lstat(t, path); st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			t.Errorf("%s: mode %o, want a socket", path, st.Mode)
		}
	}
}
