// Package treecmp compares two directory trees entry by entry and reports
// every difference, for tests that check an unpacked or mounted image (a
// kernel EROFS mount, a FUSE mount, an fsck.erofs extraction) against the
// tree it was built from.
//
// It reads both trees with lstat(2) and never follows symlinks. For each path
// it compares the file type, permission bits (including setuid, setgid and
// sticky), owner, group, size, device numbers, symlink target, extended
// attributes, content (sha256, streamed), mtime to the nanosecond, and the
// hardlink grouping of paths. It imports only the standard library and
// golang.org/x/sys/unix, and knows nothing of RAFS or EROFS.
package treecmp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/internal/xattr"
)

// Options tunes what Compare ignores. The zero value compares everything.
type Options struct {
	// IgnoreRootMtime skips the mtime of the two roots, which a mount point
	// or an extraction directory often does not carry over.
	IgnoreRootMtime bool
	// IgnoreDirSize skips the size of directories. Most callers set it: a
	// directory's st_size is filesystem-specific (4096 multiples on ext4,
	// the dirent bytes on EROFS).
	IgnoreDirSize bool
	// IgnoreXattrs lists exact xattr names (such as "security.selinux")
	// left out on both sides.
	IgnoreXattrs []string
}

// Field names used in Diff.Field. Xattr differences use FieldXattr, a colon
// and the xattr name, as in "xattr:user.foo".
const (
	FieldPresence  = "presence"  // Want/Got: "present" or "absent"
	FieldType      = "type"      // "regular", "directory", "symlink", ...
	FieldMode      = "mode"      // permission and setuid/setgid/sticky bits, "%04o"
	FieldUID       = "uid"       // decimal
	FieldGID       = "gid"       // decimal
	FieldSize      = "size"      // decimal bytes
	FieldRdev      = "rdev"      // "major:minor"
	FieldTarget    = "target"    // symlink target, quoted
	FieldXattr     = "xattr"     // prefix; value quoted, or length and sha256 if long, or "absent"
	FieldContent   = "content"   // "sha256:<hex>"
	FieldMtime     = "mtime"     // "<seconds>.<9-digit nanoseconds>"
	FieldHardlinks = "hardlinks" // the paths sharing this path's inode, space-separated
)

// Diff is one difference between the trees. Path is relative to the tree
// roots with a leading "/" ("/" is the root itself).
type Diff struct {
	Path  string
	Field string // one of the Field constants, or FieldXattr+":"+name
	Want  string // the want tree's value, formatted as the Field constant says
	Got   string // the got tree's value, formatted the same way
}

// String formats d as "PATH: FIELD: want W, got G".
func (d Diff) String() string {
	return fmt.Sprintf("%s: %s: want %s, got %s", d.Path, d.Field, d.Want, d.Got)
}

// entry is what Compare records about one path of one tree.
type entry struct {
	abs string
	st  unix.Stat_t
}

func (e *entry) fmt() uint32 { return e.st.Mode & unix.S_IFMT }

// Compare walks want and got and returns every difference between them,
// sorted by path, then by field. A path on one side only gets one
// FieldPresence diff and nothing else (so does each descendant of a missing
// directory). When the file
// types differ, only the type and the attributes common to all types (mode,
// owner, xattrs, mtime) are compared. Content is compared only between
// regular files of equal size: a size difference already says the content
// differs. The error is non-nil only when a tree cannot be read; it is not
// used for differences.
func Compare(want, got string, opts Options) ([]Diff, error) {
	wt, err := scan(want)
	if err != nil {
		return nil, err
	}
	gt, err := scan(got)
	if err != nil {
		return nil, err
	}
	c := &comparer{opts: opts}
	c.hardlinks(wt, gt)

	for _, p := range sortedKeys(wt, gt) {
		w, g := wt[p], gt[p]
		switch {
		case g == nil:
			c.add(p, FieldPresence, "present", "absent")
		case w == nil:
			c.add(p, FieldPresence, "absent", "present")
		default:
			if err := c.entry(p, w, g); err != nil {
				return nil, err
			}
		}
	}
	slices.SortStableFunc(c.diffs, func(a, b Diff) int {
		if n := strings.Compare(a.Path, b.Path); n != 0 {
			return n
		}
		return strings.Compare(a.Field, b.Field)
	})
	return c.diffs, nil
}

// scan lstats every path under root, keyed by "/"-rooted relative path.
func scan(root string) (map[string]*entry, error) {
	tree := make(map[string]*entry)
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walking %s: %w", path, err)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return fmt.Errorf("walking %s: %w", path, err)
		}
		e := &entry{abs: path}
		if err := unix.Lstat(path, &e.st); err != nil {
			return fmt.Errorf("lstat %s: %w", path, err)
		}
		tree[slashPath(rel)] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return tree, nil
}

func slashPath(rel string) string {
	if rel == "." {
		return "/"
	}
	return "/" + filepath.ToSlash(rel)
}

type comparer struct {
	opts  Options
	diffs []Diff
}

func (c *comparer) add(path, field, want, got string) {
	c.diffs = append(c.diffs, Diff{Path: path, Field: field, Want: want, Got: got})
}

func (c *comparer) entry(p string, w, g *entry) error {
	sameType := w.fmt() == g.fmt()
	if !sameType {
		c.add(p, FieldType, typeName(w.fmt()), typeName(g.fmt()))
	}
	if wm, gm := w.st.Mode&07777, g.st.Mode&07777; wm != gm {
		c.add(p, FieldMode, fmt.Sprintf("%04o", wm), fmt.Sprintf("%04o", gm))
	}
	if w.st.Uid != g.st.Uid {
		c.add(p, FieldUID, strconv.FormatUint(uint64(w.st.Uid), 10), strconv.FormatUint(uint64(g.st.Uid), 10))
	}
	if w.st.Gid != g.st.Gid {
		c.add(p, FieldGID, strconv.FormatUint(uint64(w.st.Gid), 10), strconv.FormatUint(uint64(g.st.Gid), 10))
	}
	if !(p == "/" && c.opts.IgnoreRootMtime) {
		if wt, gt := mtime(&w.st), mtime(&g.st); wt != gt {
			c.add(p, FieldMtime, wt, gt)
		}
	}
	if err := c.xattrs(p, w, g); err != nil {
		return err
	}
	if !sameType {
		return nil
	}
	switch w.fmt() {
	case unix.S_IFREG:
		if w.st.Size != g.st.Size {
			c.add(p, FieldSize, strconv.FormatInt(w.st.Size, 10), strconv.FormatInt(g.st.Size, 10))
			return nil
		}
		if w.st.Size == 0 {
			return nil
		}
		wh, gh, err := hashPair(w.abs, g.abs)
		if err != nil {
			return err
		}
		if wh != gh {
			c.add(p, FieldContent, wh, gh)
		}
	case unix.S_IFLNK:
		if w.st.Size != g.st.Size {
			c.add(p, FieldSize, strconv.FormatInt(w.st.Size, 10), strconv.FormatInt(g.st.Size, 10))
		}
		wl, err := os.Readlink(w.abs)
		if err != nil {
			return fmt.Errorf("reading symlink %s: %w", w.abs, err)
		}
		gl, err := os.Readlink(g.abs)
		if err != nil {
			return fmt.Errorf("reading symlink %s: %w", g.abs, err)
		}
		if wl != gl {
			c.add(p, FieldTarget, strconv.Quote(wl), strconv.Quote(gl))
		}
	case unix.S_IFDIR:
		if !c.opts.IgnoreDirSize && w.st.Size != g.st.Size {
			c.add(p, FieldSize, strconv.FormatInt(w.st.Size, 10), strconv.FormatInt(g.st.Size, 10))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if w.st.Rdev != g.st.Rdev {
			c.add(p, FieldRdev, rdev(w.st.Rdev), rdev(g.st.Rdev))
		}
	}
	return nil
}

func (c *comparer) xattrs(p string, w, g *entry) error {
	wx, err := xattr.Read(w.abs)
	if err != nil {
		return fmt.Errorf("%s: %w", w.abs, err)
	}
	gx, err := xattr.Read(g.abs)
	if err != nil {
		return fmt.Errorf("%s: %w", g.abs, err)
	}
	for _, name := range c.opts.IgnoreXattrs {
		delete(wx, name)
		delete(gx, name)
	}
	for _, n := range sortedKeys(wx, gx) {
		wv, wok := wx[n]
		gv, gok := gx[n]
		if wok && gok && wv == gv {
			continue
		}
		c.add(p, FieldXattr+":"+n, xattrValue(wv, wok), xattrValue(gv, gok))
	}
	return nil
}

func xattrValue(v string, ok bool) string {
	if !ok {
		return "absent"
	}
	if len(v) <= 64 {
		return strconv.Quote(v)
	}
	sum := sha256.Sum256([]byte(v))
	return fmt.Sprintf("%d bytes sha256:%s", len(v), hex.EncodeToString(sum[:]))
}

// hardlinks groups non-directory paths by inode on each side and reports
// every path whose group (the set of paths sharing its inode within the
// tree) differs between the sides. Inode numbers themselves never compare.
func (c *comparer) hardlinks(wt, gt map[string]*entry) {
	wg, gg := linkGroups(wt), linkGroups(gt)
	for p := range wt {
		if _, ok := gt[p]; !ok {
			continue
		}
		w, g := wg[p], gg[p]
		if len(w) < 2 && len(g) < 2 {
			continue
		}
		if !slices.Equal(w, g) {
			c.add(p, FieldHardlinks, strings.Join(w, " "), strings.Join(g, " "))
		}
	}
}

// linkGroups maps each non-directory path to the sorted paths sharing its
// inode; paths alone on their inode map to a one-element group.
func linkGroups(tree map[string]*entry) map[string][]string {
	type key struct{ dev, ino uint64 }
	byInode := make(map[key][]string)
	for p, e := range tree {
		if e.fmt() == unix.S_IFDIR {
			continue
		}
		k := key{uint64(e.st.Dev), e.st.Ino}
		byInode[k] = append(byInode[k], p)
	}
	groups := make(map[string][]string, len(tree))
	for _, ps := range byInode {
		slices.Sort(ps)
		for _, p := range ps {
			groups[p] = ps
		}
	}
	return groups
}

// hashPair hashes two files concurrently.
func hashPair(a, b string) (string, string, error) {
	type result struct {
		sum string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := hashFile(b)
		ch <- result{s, err}
	}()
	as, aerr := hashFile(a)
	br := <-ch
	if aerr != nil {
		return "", "", aerr
	}
	if br.err != nil {
		return "", "", br.err
	}
	return as, br.sum, nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening %s for hashing: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func mtime(st *unix.Stat_t) string {
	return fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
}

func rdev(d uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(d), unix.Minor(d))
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "regular"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("unknown(%#o)", t)
}

// sortedKeys returns the keys present in a or b, sorted.
func sortedKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
