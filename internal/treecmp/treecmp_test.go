package treecmp_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/treecmp"
)

var isRoot = os.Geteuid() == 0

func makeTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := fstree.Make(dir, fstree.Options{Root: isRoot}); err != nil {
		t.Fatalf("Make: %v", err)
	}
	return dir
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setMtime sets path's mtime (not following symlinks).
func setMtime(t *testing.T, path string, tm time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(tm.UnixNano())
	check(t, unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
}

// restore gives rel and its parent directory back the mtimes fstree.Make
// set, so a tampering shows up only in the field it is meant to change.
func restore(t *testing.T, root, rel string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, rel)); err == nil {
		setMtime(t, filepath.Join(root, rel), fstree.Mtime(rel))
	}
	parent := filepath.Dir(rel)
	if parent == "." {
		parent = ""
	}
	setMtime(t, filepath.Join(root, parent), fstree.Mtime(parent))
}

func TestIdenticalTrees(t *testing.T) {
	want, got := makeTree(t), makeTree(t)
	diffs, err := treecmp.Compare(want, got, treecmp.Options{})
	check(t, err)
	for _, d := range diffs {
		t.Errorf("unexpected diff: %v", d)
	}
}

func TestTampering(t *testing.T) {
	want := makeTree(t)
	type key struct{ path, field string }
	cases := []struct {
		name   string
		root   bool // needs root to tamper
		tamper func(t *testing.T, root string)
		want   []key
	}{
		{
			name:   "mode",
			tamper: func(t *testing.T, r string) { check(t, os.Chmod(filepath.Join(r, "data/4095"), 0o600)) },
			want:   []key{{"/data/4095", "mode"}},
		},
		{
			name: "setuid bit",
			tamper: func(t *testing.T, r string) {
				check(t, unix.Chmod(filepath.Join(r, "modes/setuid"), 0o755))
			},
			want: []key{{"/modes/setuid", "mode"}},
		},
		{
			name: "content same size",
			tamper: func(t *testing.T, r string) {
				f, err := os.OpenFile(filepath.Join(r, "data/random.bin"), os.O_WRONLY, 0)
				check(t, err)
				_, err = f.WriteAt([]byte{'!'}, fstree.RandomSize-1)
				check(t, err)
				check(t, f.Close())
				restore(t, r, "data/random.bin")
			},
			want: []key{{"/data/random.bin", "content"}},
		},
		{
			name: "size",
			tamper: func(t *testing.T, r string) {
				check(t, os.Truncate(filepath.Join(r, "data/4096"), 4095))
				restore(t, r, "data/4096")
			},
			want: []key{{"/data/4096", "size"}},
		},
		{
			name: "missing file",
			tamper: func(t *testing.T, r string) {
				check(t, os.Remove(filepath.Join(r, "data/4097")))
				restore(t, r, "data/4097")
			},
			want: []key{{"/data/4097", "presence"}},
		},
		{
			name: "extra file",
			tamper: func(t *testing.T, r string) {
				check(t, os.WriteFile(filepath.Join(r, "bigdir/extra"), nil, 0o644))
				restore(t, r, "bigdir/extra")
			},
			want: []key{{"/bigdir/extra", "presence"}},
		},
		{
			name: "extra xattr",
			tamper: func(t *testing.T, r string) {
				check(t, unix.Lsetxattr(filepath.Join(r, "data/hello.txt"), "user.extra", []byte("x"), 0))
			},
			want: []key{{"/data/hello.txt", "xattr:user.extra"}},
		},
		{
			name: "changed long xattr",
			tamper: func(t *testing.T, r string) {
				check(t, unix.Lsetxattr(filepath.Join(r, "xattrs/file"), "user.big", []byte(strings.Repeat("y", 1000)), 0))
			},
			want: []key{{"/xattrs/file", "xattr:user.big"}},
		},
		{
			name: "removed empty xattr",
			tamper: func(t *testing.T, r string) {
				check(t, unix.Lremovexattr(filepath.Join(r, "xattrs/dir"), "user.empty"))
			},
			want: []key{{"/xattrs/dir", "xattr:user.empty"}},
		},
		{
			name: "hardlink grouping",
			tamper: func(t *testing.T, r string) {
				// Replace one name of the group by an identical copy.
				third := filepath.Join(r, "hard/three/third")
				data, err := os.ReadFile(third)
				check(t, err)
				check(t, os.Remove(third))
				check(t, os.WriteFile(third, data, 0o640))
				check(t, os.Chmod(third, 0o640))
				check(t, unix.Lsetxattr(third, "user.hard", []byte("link"), 0))
				setMtime(t, third, fstree.Mtime("hard/one/original"))
				restore(t, r, "hard/three/nothing")
			},
			want: []key{
				{"/hard/one/original", "hardlinks"},
				{"/hard/three/third", "hardlinks"},
				{"/hard/two/second", "hardlinks"},
			},
		},
		{
			name: "mtime nanoseconds",
			tamper: func(t *testing.T, r string) {
				setMtime(t, filepath.Join(r, "dedup/b.bin"), fstree.Mtime("dedup/b.bin").Add(time.Nanosecond))
			},
			want: []key{{"/dedup/b.bin", "mtime"}},
		},
		{
			name: "symlink target same length",
			tamper: func(t *testing.T, r string) {
				check(t, os.Remove(filepath.Join(r, "links/relative")))
				check(t, os.Symlink("../data/jello.txt", filepath.Join(r, "links/relative")))
				restore(t, r, "links/relative")
			},
			want: []key{{"/links/relative", "target"}},
		},
		{
			name: "symlink target other length",
			tamper: func(t *testing.T, r string) {
				check(t, os.Remove(filepath.Join(r, "links/long")))
				check(t, os.Symlink(fstree.LongSymlinkTarget[:999], filepath.Join(r, "links/long")))
				restore(t, r, "links/long")
			},
			want: []key{{"/links/long", "size"}, {"/links/long", "target"}},
		},
		{
			name: "type",
			tamper: func(t *testing.T, r string) {
				fifo := filepath.Join(r, "special/fifo")
				check(t, os.Remove(fifo))
				check(t, os.WriteFile(fifo, nil, 0o644))
				check(t, os.Chmod(fifo, 0o644))
				restore(t, r, "special/fifo")
			},
			want: []key{{"/special/fifo", "type"}},
		},
		{
			name: "missing directory",
			tamper: func(t *testing.T, r string) {
				check(t, os.RemoveAll(filepath.Join(r, "a/b/c")))
				restore(t, r, "a/b/c")
			},
			want: []key{
				{"/a/b/c", "presence"},
				{"/a/b/c/d", "presence"},
				{"/a/b/c/d/e", "presence"},
				{"/a/b/c/d/e/deep.txt", "presence"},
			},
		},
		{
			name: "root mtime",
			tamper: func(t *testing.T, r string) {
				setMtime(t, r, time.Unix(1, 1))
			},
			want: []key{{"/", "mtime"}},
		},
		{
			name: "uid and gid",
			root: true,
			tamper: func(t *testing.T, r string) {
				check(t, os.Lchown(filepath.Join(r, "owners/link"), 1, 2))
			},
			want: []key{{"/owners/link", "gid"}, {"/owners/link", "uid"}},
		},
		{
			name: "rdev",
			root: true,
			tamper: func(t *testing.T, r string) {
				null := filepath.Join(r, "special/null")
				check(t, os.Remove(null))
				check(t, unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
				check(t, unix.Chmod(null, 0o666))
				restore(t, r, "special/null")
			},
			want: []key{{"/special/null", "rdev"}},
		},
		{
			name: "capability",
			root: true,
			tamper: func(t *testing.T, r string) {
				check(t, unix.Lremovexattr(filepath.Join(r, "modes/cap-bin"), "security.capability"))
			},
			want: []key{{"/modes/cap-bin", "xattr:security.capability"}},
		},
	}
	// All tamperings touch different paths, so they go into one tree and
	// each must show up as exactly its own diffs.
	got := makeTree(t)
	expected := make(map[key]bool)
	for _, tc := range cases {
		if tc.root && !isRoot {
			t.Logf("not tampering %s: needs root to chown and mknod", tc.name)
			continue
		}
		tc.tamper(t, got)
		for _, k := range tc.want {
			expected[k] = true
		}
	}
	diffs, err := treecmp.Compare(want, got, treecmp.Options{})
	check(t, err)
	seen := make(map[key]bool)
	for _, d := range diffs {
		k := key{d.Path, d.Field}
		seen[k] = true
		if !expected[k] {
			t.Errorf("unexpected diff: %v", d)
		}
	}
	for _, tc := range cases {
		for _, k := range tc.want {
			if expected[k] && !seen[k] {
				t.Errorf("%s: no diff for %s %s", tc.name, k.path, k.field)
			}
		}
	}
	sorted := slices.IsSortedFunc(diffs, func(a, b treecmp.Diff) int {
		return strings.Compare(a.Path+"\x00"+a.Field, b.Path+"\x00"+b.Field)
	})
	if !sorted {
		t.Errorf("diffs not sorted by path, then field:\n%s", join(diffs))
	}
}

func join(diffs []treecmp.Diff) string {
	var sb strings.Builder
	for _, d := range diffs {
		sb.WriteString("  " + d.String() + "\n")
	}
	return sb.String()
}

func TestDiffValues(t *testing.T) {
	want := makeTree(t)
	got := makeTree(t)
	check(t, os.Chmod(filepath.Join(got, "modes/setgid"), 0o755))
	check(t, os.Remove(filepath.Join(got, "data/empty")))
	restore(t, got, "data/empty")
	check(t, unix.Lsetxattr(filepath.Join(got, "data/hello.txt"), "user.new", []byte("v"), 0))
	diffs, err := treecmp.Compare(want, got, treecmp.Options{})
	check(t, err)
	wantDiffs := []treecmp.Diff{
		{Path: "/data/empty", Field: treecmp.FieldPresence, Want: "present", Got: "absent"},
		{Path: "/data/hello.txt", Field: treecmp.FieldXattr + ":user.new", Want: "absent", Got: `"v"`},
		{Path: "/modes/setgid", Field: treecmp.FieldMode, Want: "2755", Got: "0755"},
	}
	if !slices.Equal(diffs, wantDiffs) {
		t.Errorf("diffs:\n%s\nwant:\n%s", join(diffs), join(wantDiffs))
	}
	if s, w := wantDiffs[2].String(), "/modes/setgid: mode: want 2755, got 0755"; s != w {
		t.Errorf("String() = %q, want %q", s, w)
	}
}

func TestOptions(t *testing.T) {
	want, got := makeTree(t), makeTree(t)
	setMtime(t, got, time.Unix(5, 5))
	check(t, unix.Lsetxattr(filepath.Join(got, "data/hello.txt"), "user.ignored", []byte("x"), 0))
	check(t, unix.Lsetxattr(filepath.Join(want, "xattrs/dir"), "user.ignored", []byte("y"), 0))

	diffs, err := treecmp.Compare(want, got, treecmp.Options{
		IgnoreRootMtime: true,
		IgnoreDirSize:   true,
		IgnoreXattrs:    []string{"user.ignored"},
	})
	check(t, err)
	for _, d := range diffs {
		t.Errorf("unexpected diff with options set: %v", d)
	}

	diffs, err = treecmp.Compare(want, got, treecmp.Options{})
	check(t, err)
	var fields []string
	for _, d := range diffs {
		fields = append(fields, d.Path+" "+d.Field)
	}
	wantFields := []string{"/ mtime", "/data/hello.txt xattr:user.ignored", "/xattrs/dir xattr:user.ignored"}
	if !slices.Equal(fields, wantFields) {
		t.Errorf("without options: %q, want %q", fields, wantFields)
	}
}

func TestDirSize(t *testing.T) {
	want, got := t.TempDir(), t.TempDir()
	check(t, os.Mkdir(filepath.Join(want, "d"), 0o755))
	check(t, os.Mkdir(filepath.Join(got, "d"), 0o755))
	for i := range 300 {
		check(t, os.WriteFile(filepath.Join(got, "d", strings.Repeat("n", 200)+strings.Repeat("m", i%50)+string(rune('a'+i/50))), nil, 0o644))
	}
	// Bring both to the same entries: the got side keeps its grown size.
	ents, err := os.ReadDir(filepath.Join(got, "d"))
	check(t, err)
	for _, e := range ents {
		check(t, os.Remove(filepath.Join(got, "d", e.Name())))
	}
	for _, r := range []string{want, got} {
		setMtime(t, filepath.Join(r, "d"), time.Unix(7, 7))
		setMtime(t, r, time.Unix(8, 8))
	}
	diffs, err := treecmp.Compare(want, got, treecmp.Options{})
	check(t, err)
	if len(diffs) != 1 || diffs[0].Path != "/d" || diffs[0].Field != treecmp.FieldSize {
		t.Errorf("diffs:\n%s\nwant one size diff on /d", join(diffs))
	}
	diffs, err = treecmp.Compare(want, got, treecmp.Options{IgnoreDirSize: true})
	check(t, err)
	if len(diffs) != 0 {
		t.Errorf("with IgnoreDirSize:\n%s", join(diffs))
	}
}

func TestMissingRoot(t *testing.T) {
	dir := t.TempDir()
	if _, err := treecmp.Compare(filepath.Join(dir, "nope"), dir, treecmp.Options{}); err == nil {
		t.Error("Compare with a missing tree returned no error")
	}
}
