package checker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/nydus-go/nydusify/rafs"
)

// file is what the filesystem rule compares about one path.
type file struct {
	typ       string
	mode      uint32 // permission, setuid/setgid/sticky bits
	uid, gid  uint32
	size      uint64
	rdev      string
	target    string
	xattrs    map[string]string
	digest    string // sha256 of regular-file content
	mtime     string // "<sec>.<nsec>"
	link      string // hardlink group key, "" when alone
	synthetic bool   // a parent no entry described: only its type counts
}

// newFile starts the description of a path of the Nydus tree from its full
// st_mode (type and permission bits), owner and mtime, as both the bootstrap
// and a mount of it give them; the caller fills in the rest.
func newFile(mode, uid, gid uint32, sec, nsec int64) *file {
	return &file{typ: typeOfMode(mode), mode: mode & 0o7777, uid: uid, gid: gid, mtime: fmt.Sprintf("%d.%09d", sec, nsec)}
}

// setXattr records xattr name of f.
func (f *file) setXattr(name, value string) {
	if f.xattrs == nil {
		f.xattrs = map[string]string{}
	}
	f.xattrs[name] = value
}

func typeOfMode(m uint32) string {
	switch m & rafs.ModeFmt {
	case rafs.ModeReg:
		return "regular"
	case rafs.ModeDir:
		return "directory"
	case rafs.ModeLnk:
		return "symlink"
	case rafs.ModeChr:
		return "char device"
	case rafs.ModeBlk:
		return "block device"
	case rafs.ModeFifo:
		return "fifo"
	case rafs.ModeSock:
		return "socket"
	}
	return "unknown"
}

func tarFile(h *tar.Header, r io.Reader) (*file, error) {
	f := &file{
		mode: uint32(h.Mode) & 0o7777, uid: uint32(h.Uid), gid: uint32(h.Gid),
		mtime: fmt.Sprintf("%d.%09d", h.ModTime.Unix(), h.ModTime.Nanosecond()),
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		f.typ, f.size = "regular", uint64(h.Size)
		hash := sha256.New()
		if _, err := io.Copy(hash, r); err != nil {
			return nil, err
		}
		f.digest = hex.EncodeToString(hash.Sum(nil))
	case tar.TypeDir:
		f.typ = "directory"
	case tar.TypeSymlink:
		// Appliers create symlinks with symlink(2): mode 0777 whatever the header says.
		f.typ, f.target, f.size, f.mode = "symlink", h.Linkname, uint64(len(h.Linkname)), 0o777
	case tar.TypeChar, tar.TypeBlock:
		f.typ = map[byte]string{tar.TypeChar: "char device", tar.TypeBlock: "block device"}[h.Typeflag]
		f.rdev = fmt.Sprintf("%d:%d", h.Devmajor, h.Devminor)
	case tar.TypeFifo:
		f.typ = "fifo"
	default:
		return nil, fmt.Errorf("tar entry type %q not supported", h.Typeflag)
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			f.setXattr(name, v)
		}
	}
	return f, nil
}

// nydusTree collects the Nydus tree for compareTrees, from the bootstrap
// (readRafs) or from a mount of the image (readMounted). A regular file is
// read once per inode: its other paths get a copy of the first path's
// description, and together they form a hardlink group.
type nydusTree struct {
	files      map[string]*file
	unreadable map[string]string   // path → what could not be read, and why
	inodes     map[uint64][]string // inode of a regular file → its paths
}

func newNydusTree() *nydusTree {
	return &nydusTree{files: map[string]*file{}, unreadable: map[string]string{}, inodes: map[uint64][]string{}}
}

// sameInode records p as a path of the regular file with inode ino. When
// another path of ino came first, p gets a copy of its description (and of
// its unreadable entry) and sameInode returns true: nothing is left to read.
func (t *nydusTree) sameInode(p string, ino uint64) bool {
	others := t.inodes[ino]
	t.inodes[ino] = append(others, p)
	if len(others) == 0 {
		return false
	}
	cp := *t.files[others[0]]
	t.files[p] = &cp
	if msg, ok := t.unreadable[others[0]]; ok {
		t.unreadable[p] = msg
	}
	return true
}

// cannotRead records in unreadable that what (such as "content") of path p
// could not be read.
func (t *nydusTree) cannotRead(p, what string, err error) {
	msg := what + ": " + err.Error()
	if prev, ok := t.unreadable[p]; ok {
		msg = prev + "; " + msg
	}
	t.unreadable[p] = msg
}

// done links the paths of each inode seen more than once and returns the
// path → file map and the unreadable paths.
func (t *nydusTree) done() (map[string]*file, map[string]string) {
	for ino, ps := range t.inodes {
		if len(ps) > 1 {
			for _, p := range ps {
				t.files[p].link = fmt.Sprint(ino)
			}
		}
	}
	return t.files, t.unreadable
}

// readRafs walks an image's bootstrap, reading every regular file's content
// through the image (each chunk verified against the bootstrap's chunk
// table), into a path → file map. A file whose data cannot be read is
// reported in unreadable and kept without a digest.
func readRafs(ctx context.Context, img *rafs.Image) (map[string]*file, map[string]string, error) {
	rd := img.Bootstrap()
	t := newNydusTree()
	err := rd.Walk(func(p string, n *rafs.Node) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n.Type() == rafs.ModeReg && t.sameInode(p, n.Nid) {
			return nil
		}
		ino := n.Inode
		f := newFile(uint32(ino.Mode), ino.UID, ino.GID, int64(ino.Mtime), int64(ino.MtimeNsec))
		for _, x := range n.Xattrs {
			f.setXattr(x.Name, string(x.Value))
		}
		switch n.Type() {
		case rafs.ModeReg:
			f.size = ino.Size
			h := sha256.New()
			if err := img.CopyFile(h, n); err != nil {
				t.cannotRead(p, "content", err)
			} else {
				f.digest = hex.EncodeToString(h.Sum(nil))
			}
		case rafs.ModeLnk:
			target, err := rd.Readlink(n)
			if err != nil {
				return err
			}
			f.target, f.size = target, uint64(len(target))
		case rafs.ModeChr, rafs.ModeBlk:
			major, minor := rafs.DecodeRdev(ino.U)
			f.rdev = fmt.Sprintf("%d:%d", major, minor)
		}
		t.files[p] = f
		return nil
	})
	files, unreadable := t.done()
	return files, unreadable, err
}

// compareTrees lists every difference between the source tree (want) and
// the Nydus tree (got), sorted by path.
func compareTrees(want, got map[string]*file, ignoreXattrs map[string]bool) []Problem {
	var out []Problem
	add := func(p, field, w, g string) {
		out = append(out, Problem{Rule: RuleFilesystem, Path: p, Field: field, Want: w, Got: g})
	}
	paths := map[string]bool{}
	for p := range want {
		paths[p] = true
	}
	for p := range got {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	for _, p := range sorted {
		w, g := want[p], got[p]
		switch {
		case w == nil:
			add(p, "presence", "absent", "present")
			continue
		case g == nil:
			add(p, "presence", "present", "absent")
			continue
		}
		if w.typ != g.typ {
			add(p, "type", w.typ, g.typ)
			continue
		}
		if w.synthetic {
			continue
		}
		if w.mode != g.mode {
			add(p, "mode", fmt.Sprintf("%04o", w.mode), fmt.Sprintf("%04o", g.mode))
		}
		if w.uid != g.uid {
			add(p, "uid", fmt.Sprint(w.uid), fmt.Sprint(g.uid))
		}
		if w.gid != g.gid {
			add(p, "gid", fmt.Sprint(w.gid), fmt.Sprint(g.gid))
		}
		if w.typ != "directory" && w.size != g.size {
			add(p, "size", fmt.Sprint(w.size), fmt.Sprint(g.size))
		}
		if w.rdev != g.rdev {
			add(p, "rdev", w.rdev, g.rdev)
		}
		if w.target != g.target {
			add(p, "target", w.target, g.target)
		}
		if w.digest != g.digest && g.digest != "" && w.size == g.size {
			add(p, "content", "sha256:"+w.digest, "sha256:"+g.digest)
		}
		if p != "/" && w.mtime != g.mtime {
			add(p, "mtime", w.mtime, g.mtime)
		}
		for name := range unionKeys(w.xattrs, g.xattrs) {
			if ignoreXattrs[name] {
				continue
			}
			wv, wok := w.xattrs[name]
			gv, gok := g.xattrs[name]
			switch {
			case !wok:
				add(p, "xattr:"+name, "absent", fmt.Sprintf("%q", gv))
			case !gok:
				add(p, "xattr:"+name, fmt.Sprintf("%q", wv), "absent")
			case wv != gv:
				add(p, "xattr:"+name, fmt.Sprintf("%q", wv), fmt.Sprintf("%q", gv))
			}
		}
	}
	return append(out, compareLinks(want, got)...)
}

func unionKeys(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// compareLinks checks that the same paths share an inode on both sides.
func compareLinks(want, got map[string]*file) []Problem {
	groups := func(t map[string]*file) map[string]string {
		members := map[string][]string{}
		for p, f := range t {
			if f.link != "" {
				members[f.link] = append(members[f.link], p)
			}
		}
		out := map[string]string{}
		for _, ps := range members {
			sort.Strings(ps)
			for _, p := range ps {
				out[p] = strings.Join(ps, " ")
			}
		}
		return out
	}
	wg, gg := groups(want), groups(got)
	var out []Problem
	for p := range unionKeys(wg, gg) {
		if want[p] == nil || got[p] == nil {
			continue
		}
		if wg[p] != gg[p] {
			out = append(out, Problem{Rule: RuleFilesystem, Path: p, Field: "hardlinks", Want: orNone(wg[p]), Got: orNone(gg[p])})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
