// Package fstree writes deterministic source trees to disk for tests that
// build RAFS (EROFS) images and then check what comes back out of them.
//
// Make creates one fixed tree that exercises every file type and attribute a
// RAFS v6 bootstrap must carry: regular files of awkward sizes (empty, exactly
// one block, multi-MiB pseudo-random data, repeated blocks for dedup, sparse
// files), a directory whose dirents span many 4 KiB blocks, nested
// directories, symlinks (relative, absolute, dangling, ~1000-byte target),
// a hardlink group spread over three directories, a fifo, 255-byte and UTF-8
// names, names that sort before ".", setuid/setgid/sticky and odd permission
// bits, user.* xattrs (an empty value, a ~1000-byte value) and mtimes with
// non-zero nanoseconds on every entry. With Options.Root it adds what only root
// can create: device nodes, uid/gid up to 4294967294, trusted.* xattrs and a
// security.capability blob. With Options.Big it adds a sparse 5 GiB file.
//
// The tree is the same on every call with the same Options (content, modes,
// owners, xattrs and timestamps), so two calls can be compared with
// internal/treecmp. The package consumes nothing but the local filesystem and
// imports only the standard library and golang.org/x/sys/unix.
package fstree

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options selects the optional parts of the tree. The zero value makes the
// tree any user can create.
type Options struct {
	// Root adds device nodes (char 1:3, char 259:70000, block 7:200), owners
	// with large uids and gids (up to 4294967294), trusted.* xattrs (on a
	// regular file, a directory and a symlink) and a security.capability v2
	// xattr on a regular file. Creating them needs root (CAP_MKNOD, CAP_CHOWN,
	// CAP_SYS_ADMIN, CAP_SETFCAP).
	Root bool
	// Big adds big/sparse-5g, a sparse file of exactly 5 GiB with a few bytes
	// of data at its start, middle and end. It takes almost no disk space on
	// filesystems with holes, but readers that expand holes see 5 GiB.
	Big bool
}

// Sizes and well-known values in the tree, exported so tests can assert on
// them without re-deriving the layout.
const (
	// BigDirEntries is the number of entries in /bigdir.
	BigDirEntries = 3000
	// RandomSize is the size of /data/random.bin.
	RandomSize = 3<<20 + 12345
	// DedupBlock is the size of the block repeated in /dedup/a.bin and /dedup/b.bin.
	DedupBlock = 1 << 20
	// DedupBlocks is how many times the block repeats in each dedup file.
	DedupBlocks = 4
	// SparseSize is the size of /data/sparse, whose data sits only at its end.
	SparseSize = 20<<20 + 17
	// BigSize is the size of /big/sparse-5g (Options.Big).
	BigSize = 5 << 30
	// MaxUID is the largest uid and gid the tree uses with Options.Root;
	// 4294967295 is (uid_t)-1, which chown(2) reads as "leave unchanged".
	MaxUID = 4294967294
)

// CapabilityV2 is the security.capability value the tree puts on
// /modes/cap-bin with Options.Root: a struct vfs_cap_data of revision 2
// (magic_etc = VFS_CAP_REVISION_2|VFS_CAP_FLAGS_EFFECTIVE = 0x02000001,
// little-endian), then two {permitted, inheritable} little-endian u32 pairs
// for capability bits 0-31 and 32-63. The permitted set is CAP_NET_BIND_SERVICE
// (10) and CAP_NET_RAW (13), the inheritable set is empty, as `setcap
// cap_net_bind_service,cap_net_raw+ep` would write it.
var CapabilityV2 = []byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc
	0x00, 0x24, 0x00, 0x00, // data[0].permitted: 1<<10 | 1<<13
	0x00, 0x00, 0x00, 0x00, // data[0].inheritable
	0x00, 0x00, 0x00, 0x00, // data[1].permitted
	0x00, 0x00, 0x00, 0x00, // data[1].inheritable
}

// LongSymlinkTarget is the 1000-byte target of /links/long.
var LongSymlinkTarget = longTarget(1000)

// Make creates dir (and its parents) if needed and writes the tree into it;
// dir itself gets mode 0755 and the mtime Mtime("") like every other entry.
// dir must be empty or absent. Make returns the first error it meets, wrapped
// with the path it was creating; a partial tree may then be left behind.
func Make(dir string, opts Options) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating tree root %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading tree root %s: %w", dir, err)
	}
	if len(ents) != 0 {
		return fmt.Errorf("creating tree in %s: directory is not empty", dir)
	}
	m := &maker{root: dir, opts: opts}
	m.build()
	if m.err != nil {
		return m.err
	}
	m.finish()
	return m.err
}

// MakeSocket creates a unix socket file at path by binding a socket to it and
// closing the socket; the file stays. Builders are expected to refuse or skip
// sockets, so tests use this to check that path. Paths longer than a
// sockaddr_un allows are bound through /proc/self/fd.
func MakeSocket(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("creating socket for %s: %w", path, err)
	}
	defer unix.Close(fd)
	name := path
	if len(name) >= 108 { // sizeof(sun_path), including the NUL
		dfd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening parent of socket %s: %w", path, err)
		}
		defer unix.Close(dfd)
		name = fmt.Sprintf("/proc/self/fd/%d/%s", dfd, filepath.Base(path))
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		return fmt.Errorf("binding socket %s: %w", path, err)
	}
	return nil
}

// maker holds the state of one Make call. err is sticky: once set, every
// step is a no-op, so build reads as a flat list of entries.
type maker struct {
	root string
	opts Options
	err  error
	// dirs are the relative paths of directories whose mode and mtime are
	// set by finish, after all their children exist.
	dirs []dirAttr
	// timed are the relative paths of non-directories whose mtime finish
	// sets (after every link, chmod and xattr is done).
	timed []string
}

type dirAttr struct {
	rel  string
	mode uint32
}

func (m *maker) abs(rel string) string { return filepath.Join(m.root, rel) }

func (m *maker) fail(err error) {
	if m.err == nil {
		m.err = err
	}
}

// dir creates directory rel; its mode is applied in finish.
func (m *maker) dir(rel string, mode uint32) {
	if m.err != nil {
		return
	}
	if rel != "" {
		if err := unix.Mkdir(m.abs(rel), 0o700); err != nil {
			m.fail(fmt.Errorf("creating directory %s: %w", rel, err))
			return
		}
	}
	m.dirs = append(m.dirs, dirAttr{rel: rel, mode: mode})
}

// file creates regular file rel with the content r writes and chmods it.
func (m *maker) file(rel string, mode uint32, r io.Reader) {
	if m.err != nil {
		return
	}
	f, err := os.OpenFile(m.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		m.fail(fmt.Errorf("creating file %s: %w", rel, err))
		return
	}
	if r != nil {
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			m.fail(fmt.Errorf("writing file %s: %w", rel, err))
			return
		}
	}
	if err := f.Close(); err != nil {
		m.fail(fmt.Errorf("closing file %s: %w", rel, err))
		return
	}
	m.chmod(rel, mode)
	m.timed = append(m.timed, rel)
}

// empty creates an empty regular file with mknod(2), which is much cheaper
// than open and close.
func (m *maker) empty(rel string, mode uint32) {
	if m.err != nil {
		return
	}
	if err := unix.Mknod(m.abs(rel), unix.S_IFREG|0o600, 0); err != nil {
		m.fail(fmt.Errorf("creating empty file %s: %w", rel, err))
		return
	}
	m.chmod(rel, mode)
	m.timed = append(m.timed, rel)
}

// sparse creates a file of size bytes whose only data are the given
// writes; everything else is a hole.
func (m *maker) sparse(rel string, size int64, writes map[int64]string) {
	if m.err != nil {
		return
	}
	f, err := os.OpenFile(m.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		m.fail(fmt.Errorf("creating sparse file %s: %w", rel, err))
		return
	}
	err = f.Truncate(size)
	if err == nil {
		for off, s := range writes {
			if _, err = f.WriteAt([]byte(s), off); err != nil {
				break
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		m.fail(fmt.Errorf("writing sparse file %s: %w", rel, err))
		return
	}
	m.chmod(rel, 0o644)
	m.timed = append(m.timed, rel)
}

func (m *maker) symlink(rel, target string) {
	if m.err != nil {
		return
	}
	if err := unix.Symlink(target, m.abs(rel)); err != nil {
		m.fail(fmt.Errorf("creating symlink %s: %w", rel, err))
		return
	}
	m.timed = append(m.timed, rel)
}

func (m *maker) link(existing, rel string) {
	if m.err != nil {
		return
	}
	if err := unix.Link(m.abs(existing), m.abs(rel)); err != nil {
		m.fail(fmt.Errorf("creating hardlink %s to %s: %w", rel, existing, err))
	}
}

func (m *maker) mknod(rel string, typ, mode uint32, major, minor uint32) {
	if m.err != nil {
		return
	}
	if err := unix.Mknod(m.abs(rel), typ|0o600, int(unix.Mkdev(major, minor))); err != nil {
		m.fail(fmt.Errorf("creating node %s: %w", rel, err))
		return
	}
	m.chmod(rel, mode)
	m.timed = append(m.timed, rel)
}

func (m *maker) chmod(rel string, mode uint32) {
	if m.err != nil {
		return
	}
	if err := unix.Chmod(m.abs(rel), mode); err != nil {
		m.fail(fmt.Errorf("setting mode %04o on %s: %w", mode, rel, err))
	}
}

// chown sets owner and group. It must run before chmod: chown(2) clears the
// setuid and setgid bits and drops security.capability.
func (m *maker) chown(rel string, uid, gid int) {
	if m.err != nil || !m.opts.Root {
		return
	}
	if err := unix.Lchown(m.abs(rel), uid, gid); err != nil {
		m.fail(fmt.Errorf("setting owner %d:%d on %s: %w", uid, gid, rel, err))
	}
}

func (m *maker) xattr(rel, name string, value []byte) {
	if m.err != nil {
		return
	}
	if err := unix.Lsetxattr(m.abs(rel), name, value, 0); err != nil {
		m.fail(fmt.Errorf("setting xattr %s on %s: %w", name, rel, err))
	}
}

// userXattrs puts the standard set of user.* xattrs on rel.
func (m *maker) userXattrs(rel string) {
	m.xattr(rel, "user.empty", nil)
	m.xattr(rel, "user.small", []byte("value of "+filepath.Base(rel)))
	m.xattr(rel, "user.big", patterned(1000, rel))
	m.xattr(rel, "user."+strings.Repeat("n", 200), []byte{0, 1, 2, 0xff})
}

// build lays out the whole tree. Directory modes and all mtimes come later,
// in finish. Within a file the order is: content, owner, xattrs, mode.
func (m *maker) build() {
	m.dir("", 0o755)

	// Regular files of boundary sizes.
	m.dir("data", 0o755)
	m.file("data/empty", 0o644, nil)
	m.file("data/hello.txt", 0o644, strings.NewReader("hello, rafs\n"))
	m.file("data/4095", 0o644, bytes.NewReader(patterned(4095, "4095")))
	m.file("data/4096", 0o644, bytes.NewReader(patterned(4096, "4096")))
	m.file("data/4097", 0o644, bytes.NewReader(patterned(4097, "4097")))
	m.file("data/random.bin", 0o644, io.LimitReader(rand.New(rand.NewSource(20260101)), RandomSize))
	m.sparse("data/sparse", SparseSize, map[int64]string{SparseSize - 17: "tail after hole\n!"})
	m.sparse("data/all-hole", 1<<20, nil)

	// Identical 1 MiB blocks inside a file and across two files.
	m.dir("dedup", 0o755)
	block := make([]byte, DedupBlock)
	rand.New(rand.NewSource(4242)).Read(block)
	m.file("dedup/a.bin", 0o644, repeatReader(block, DedupBlocks))
	m.file("dedup/b.bin", 0o644, repeatReader(block, DedupBlocks))

	if m.opts.Big {
		m.dir("big", 0o755)
		m.sparse("big/sparse-5g", BigSize, map[int64]string{
			0:           "start",
			BigSize / 2: "middle",
			BigSize - 3: "end",
		})
	}

	// A directory whose dirents span many 4 KiB blocks. Names vary in
	// length so block boundaries fall at different name sizes. Most entries
	// are symlinks because creating regular files is several times slower
	// on ext4, and the entry type does not matter for the dirent layout.
	m.dir("bigdir", 0o755)
	for i := 0; i < BigDirEntries; i++ {
		name := fmt.Sprintf("bigdir/entry-%04d%s", i, strings.Repeat("x", i%23))
		switch {
		case i%500 == 0:
			m.dir(name, 0o755)
		case i%3 == 0:
			m.empty(name, 0o644)
		default:
			m.symlink(name, fmt.Sprintf("entry-%04d", i-1))
		}
	}

	m.dir("a", 0o755)
	m.dir("a/b", 0o750)
	m.dir("a/b/c", 0o700)
	m.dir("a/b/c/d", 0o755)
	m.dir("a/b/c/d/e", 0o755)
	m.file("a/b/c/d/e/deep.txt", 0o644, strings.NewReader("deep\n"))
	m.dir("a/empty-dir", 0o755)

	m.dir("links", 0o755)
	m.symlink("links/relative", "../data/hello.txt")
	m.symlink("links/absolute", "/etc/passwd")
	m.symlink("links/dangling", "does/not/exist")
	m.symlink("links/long", LongSymlinkTarget)
	m.symlink("links/to-dir", "../a/b")
	m.symlink("links/dot", ".")

	// One inode under three names in three directories.
	m.dir("hard", 0o755)
	m.dir("hard/one", 0o755)
	m.dir("hard/two", 0o755)
	m.dir("hard/three", 0o755)
	m.file("hard/one/original", 0o640, strings.NewReader("shared by three names\n"))
	m.xattr("hard/one/original", "user.hard", []byte("link"))
	m.link("hard/one/original", "hard/two/second")
	m.link("hard/one/original", "hard/three/third")

	m.dir("special", 0o755)
	if m.err == nil {
		if err := unix.Mkfifo(m.abs("special/fifo"), 0o600); err != nil {
			m.fail(fmt.Errorf("creating fifo special/fifo: %w", err))
		} else {
			m.chmod("special/fifo", 0o644)
			m.timed = append(m.timed, "special/fifo")
		}
	}
	if m.opts.Root {
		m.mknod("special/null", unix.S_IFCHR, 0o666, 1, 3)
		m.mknod("special/bigchar", unix.S_IFCHR, 0o620, 259, 70000)
		m.mknod("special/block", unix.S_IFBLK, 0o660, 7, 200)
	}

	// Names: 255 bytes ASCII, 255 bytes of 3-byte UTF-8, non-BMP emoji, and
	// names that sort before "." and "..".
	m.dir("names", 0o755)
	m.file("names/"+strings.Repeat("L", 255), 0o644, strings.NewReader("255 ascii\n"))
	m.file("names/"+strings.Repeat("名", 85), 0o644, strings.NewReader("255 utf-8\n"))
	m.file("names/日本語ファイル.txt", 0o644, strings.NewReader("cjk\n"))
	m.file("names/emoji-😀🚀.txt", 0o644, strings.NewReader("emoji\n"))
	m.file("names/-dash", 0o644, strings.NewReader("dash\n"))
	m.file("names/!bang", 0o644, strings.NewReader("bang\n"))
	m.file("names/ space and\ttab", 0o644, strings.NewReader("space\n"))
	m.dir("names/-dir", 0o755)
	m.file("names/-dir/!x", 0o644, nil)
	m.file("names/.hidden", 0o644, nil)
	m.file("names/..dotdot", 0o644, nil)

	m.dir("modes", 0o755)
	m.file("modes/setuid", 0o4755, strings.NewReader("#!/bin/sh\n"))
	m.file("modes/setgid", 0o2755, strings.NewReader("#!/bin/sh\n"))
	m.file("modes/all-bits", 0o7777, nil)
	m.file("modes/0600", 0o600, strings.NewReader("private\n"))
	m.file("modes/0444", 0o444, strings.NewReader("read only\n"))
	// Without root a 0000 file with data could not be read back by the
	// comparing test, so it only has content under Options.Root.
	var secret io.Reader
	if m.opts.Root {
		secret = strings.NewReader("secret\n")
	}
	m.file("modes/0000", 0o000, secret)
	m.dir("modes/sticky", 0o1777)
	m.file("modes/sticky/inside", 0o666, nil)
	m.dir("modes/setgid-dir", 0o2755)

	m.dir("xattrs", 0o755)
	m.file("xattrs/file", 0o644, strings.NewReader("has xattrs\n"))
	m.userXattrs("xattrs/file")
	m.dir("xattrs/dir", 0o755)
	m.userXattrs("xattrs/dir")
	m.xattr("xattrs/dir", "user.only-dir", []byte("d"))

	if m.opts.Root {
		m.dir("owners", 0o755)
		m.file("owners/max", 0o644, strings.NewReader("max ids\n"))
		m.chown("owners/max", MaxUID, MaxUID)
		m.file("owners/above-16bit", 0o644, nil)
		m.chown("owners/above-16bit", 65536, 70000)
		m.file("owners/mixed", 0o4750, nil)
		m.chown("owners/mixed", 1000, 4294967293)
		m.chmod("owners/mixed", 0o4750) // chown cleared setuid
		m.dir("owners/dir", 0o755)
		m.chown("owners/dir", 123456789, 987654321)
		m.symlink("owners/link", "max")
		m.chown("owners/link", 4000000000, 4000000001)

		m.file("modes/cap-bin", 0o755, strings.NewReader("\x7fELF not really\n"))
		m.chown("modes/cap-bin", 0, 0)
		m.xattr("modes/cap-bin", "security.capability", CapabilityV2)

		m.xattr("xattrs/file", "trusted.foo", []byte("bar"))
		m.xattr("xattrs/dir", "trusted.dir", []byte("trusted dir value"))
		m.symlink("xattrs/link", "file")
		m.xattr("xattrs/link", "trusted.link", []byte("on a symlink"))
	}
}

// finish applies directory modes, then every mtime: non-directories first,
// then directories deepest first so that no later step touches a
// directory's mtime after it is set.
func (m *maker) finish() {
	for _, rel := range m.timed {
		m.setTime(rel)
	}
	sort.SliceStable(m.dirs, func(i, j int) bool {
		return depth(m.dirs[i].rel) > depth(m.dirs[j].rel)
	})
	for _, d := range m.dirs {
		m.chmod(d.rel, d.mode)
		m.setTime(d.rel)
	}
}

func (m *maker) setTime(rel string) {
	if m.err != nil {
		return
	}
	t := unix.NsecToTimespec(Mtime(rel).UnixNano())
	ts := []unix.Timespec{t, t}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, m.abs(rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		m.fail(fmt.Errorf("setting mtime on %s: %w", rel, err))
	}
}

// Mtime returns the modification (and access) time Make gives the entry at
// rel, a slash-separated path relative to the tree root ("" for the root).
// Every time lies between 2001 and 2033 and has non-zero nanoseconds. The
// three names of the hardlink group share the time of "hard/one/original".
func Mtime(rel string) time.Time {
	h := fnv.New64a()
	h.Write([]byte(rel))
	v := h.Sum64()
	sec := int64(1e9) + int64(v%1e9)
	nsec := int64(1 + (v>>32)%999999999)
	return time.Unix(sec, nsec)
}

func depth(rel string) int {
	if rel == "" {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// patterned returns n deterministic, printable bytes derived from seed.
func patterned(n int, seed string) []byte {
	b := make([]byte, 0, n)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%s:%d;", seed, i)
	}
	return b[:n]
}

func longTarget(n int) string {
	var sb strings.Builder
	for i := 0; sb.Len() < n; i++ {
		fmt.Fprintf(&sb, "segment%03d/", i)
	}
	return sb.String()[:n-1] + "z"
}

// repeatReader yields block count times without copying it.
func repeatReader(block []byte, count int) io.Reader {
	rs := make([]io.Reader, count)
	for i := range rs {
		rs[i] = bytes.NewReader(block)
	}
	return io.MultiReader(rs...)
}
