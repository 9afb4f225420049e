package checker

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nydus-go/nydusify/tarstream"
)

// The reference side of the filesystem rule: the source layers applied one
// tar entry at a time, in tar order, with the rules of containerd's applier
// (its archive package), the runtime's view of an image:
//
//   - an entry's parent directory is resolved through the symlinks already
//     applied, within the root: an absolute target starts again at the root,
//     a relative one at the link's directory, ".." is taken lexically and
//     stops at the root; the entry's own name is never followed;
//   - missing parents are created as directories of mode 0755;
//   - a parent that exists but is neither directory nor symlink fails the
//     apply (ENOTDIR);
//   - an existing path is removed with its subtree before an entry is
//     written there, unless both are directories (then the entry's metadata
//     replaces the old, the contents stay); so the last duplicate wins;
//   - a hardlink's target is resolved like an entry's path; a missing target
//     or a directory fails the apply;
//   - symlinks get mode 0777 (symlink(2) does not take a mode).
//
// Whiteouts follow image-spec layer.md, which umoci implements: `.wh.NAME`
// and `.wh..wh..opq` hide what lower layers wrote, never what their own
// layer wrote, whatever their place in the tar. containerd differs for a
// whiteout placed after an entry it names in the same layer (it removes the
// entry) and for an opaque marker placed after entries below a lower
// directory (it removes that directory with them); well-formed layers put
// neither there. Here a lower directory that the layer wrote into stays, as
// an implied directory holding only the layer's entries: what the spec's
// order (whiteouts first) gives.
//
// It shares no code with the converter (rafsbuild), so the two check each
// other.

// maxSymlinks bounds the symlinks followed for one path, like containerd.
const maxSymlinks = 255

// anode is one path of the applied tree.
type anode struct {
	f     *file
	kids  map[string]*anode // directories only
	layer int               // the layer that wrote it; -1 for the initial root
}

func (n *anode) isDir() bool { return n.f.typ == "directory" }

// applier holds the tree as the layers applied so far leave it.
type applier struct {
	root  *anode
	layer int // the layer being applied
	links int // hardlink groups made so far, for their keys
}

func impliedDir() *file { return &file{typ: "directory", mode: 0o755, synthetic: true} }

// flatten applies the layers' tar streams, hashing contents as they stream,
// and returns the final tree as a path → file map.
func flatten(ctx context.Context, layers []v1.Layer) (map[string]*file, error) {
	a := &applier{root: &anode{f: impliedDir(), kids: map[string]*anode{}, layer: -1}}
	for i, l := range layers {
		a.layer = i
		if err := a.applyLayer(ctx, l); err != nil {
			return nil, fmt.Errorf("reading source layer %d of %d: %w", i+1, len(layers), err)
		}
	}
	return a.files(), nil
}

func (a *applier) applyLayer(ctx context.Context, l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	stream, err := tarstream.Open(rc)
	if err != nil {
		return err
	}
	defer stream.Close()
	tr := tar.NewReader(stream)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := a.applyEntry(h, tr); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	}
}

// applyEntry applies one tar entry whose content r holds.
func (a *applier) applyEntry(h *tar.Header, r io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name := path.Clean("/" + h.Name)
	if name == "/" {
		// containerd leaves the root as the snapshotter made it; the
		// converter keeps the entry's metadata, and so does this side.
		f, err := tarFile(h, r)
		if err != nil {
			return err
		}
		if f.typ != "directory" {
			return fmt.Errorf("names the root but is %s", f.typ)
		}
		a.root.f, a.root.layer = f, a.layer
		return nil
	}
	dirPath, base := path.Split(name)
	dir, err := a.parent(dirPath)
	if err != nil {
		return err
	}
	if base == ".wh..wh..opq" {
		for k := range dir.kids {
			a.hide(dir, k)
		}
		return nil
	}
	if hidden, ok := strings.CutPrefix(base, ".wh."); ok {
		if hidden == "" || hidden == "." || hidden == ".." {
			return fmt.Errorf("invalid whiteout name %q", base)
		}
		if _, ok := dir.kids[hidden]; ok {
			a.hide(dir, hidden)
		}
		return nil
	}

	old := dir.kids[base]
	if old != nil && !(old.isDir() && h.Typeflag == tar.TypeDir) {
		delete(dir.kids, base)
		old = nil
	}
	var f *file
	if h.Typeflag == tar.TypeLink {
		if f, err = a.hardlink(h.Linkname); err != nil {
			return err
		}
	} else if f, err = tarFile(h, r); err != nil {
		return err
	}
	if old != nil {
		old.f, old.layer = f, a.layer
		return nil
	}
	n := &anode{f: f, layer: a.layer}
	if f.typ == "directory" {
		n.kids = map[string]*anode{}
	}
	dir.kids[base] = n
	return nil
}

// resolve follows the symlinks in the absolute path p within the root and
// returns the path it leads to, as a list of names from the root. Names
// that do not exist are kept as they are.
func (a *applier) resolve(p string) ([]string, error) {
	todo := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	var done []string
	followed := 0
	n := a.root
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == "" {
			continue
		}
		var next *anode
		if n != nil {
			next = n.kids[name]
		}
		if next == nil || next.f.typ != "symlink" {
			done = append(done, name)
			n = next
			continue
		}
		if followed++; followed > maxSymlinks {
			return nil, fmt.Errorf("more than %d symlinks to follow in %s", maxSymlinks, p)
		}
		var restart string
		if strings.HasPrefix(next.f.target, "/") {
			restart = path.Clean(next.f.target)
		} else {
			restart = path.Join("/", strings.Join(done, "/"), next.f.target)
		}
		todo = append(strings.Split(strings.Trim(restart, "/"), "/"), todo...)
		done, n = nil, a.root
	}
	return done, nil
}

// parent resolves the directory dirPath and creates what is missing of it,
// as containerd's mkparent does.
func (a *applier) parent(dirPath string) (*anode, error) {
	names, err := a.resolve(dirPath)
	if err != nil {
		return nil, err
	}
	n := a.root
	for i, name := range names {
		next := n.kids[name]
		switch {
		case next == nil:
			next = &anode{f: impliedDir(), kids: map[string]*anode{}, layer: a.layer}
			n.kids[name] = next
		case !next.isDir():
			return nil, fmt.Errorf("parent /%s is a %s, not a directory", strings.Join(names[:i+1], "/"), next.f.typ)
		}
		n = next
	}
	return n, nil
}

// hardlink returns the description of a new path of the file that target
// names: the same inode, so the same metadata and hardlink group.
func (a *applier) hardlink(target string) (*file, error) {
	dirPath, base := path.Split(path.Clean("/" + target))
	names, err := a.resolve(dirPath)
	if err != nil {
		return nil, err
	}
	n := a.root
	for _, name := range append(names, base) {
		if n == nil || n.kids == nil {
			n = nil
			break
		}
		n = n.kids[name]
	}
	resolved := "/" + strings.Join(append(names, base), "/")
	switch {
	case n == nil:
		return nil, fmt.Errorf("hardlink target %s (%s) does not exist", target, resolved)
	case n.isDir():
		return nil, fmt.Errorf("hardlink target %s (%s) is a directory", target, resolved)
	}
	// RAFS, like the trees the filesystem rule reads, only groups regular
	// files; other types compare as copies.
	if n.f.typ == "regular" && n.f.link == "" {
		a.links++
		n.f.link = fmt.Sprint("source-", a.links)
	}
	cp := *n.f
	return &cp, nil
}

// hide applies a whiteout to dir's child name: what lower layers wrote goes,
// what the current layer wrote stays (a lower directory the layer wrote
// into stays as an implied directory).
func (a *applier) hide(dir *anode, name string) {
	n := dir.kids[name]
	if n.layer != a.layer && !a.wroteBelow(n) {
		delete(dir.kids, name)
		return
	}
	if n.layer != a.layer {
		n.f, n.layer = impliedDir(), a.layer
	}
	for k := range n.kids {
		a.hide(n, k)
	}
}

// wroteBelow reports whether the current layer wrote anything below n.
func (a *applier) wroteBelow(n *anode) bool {
	for _, k := range n.kids {
		if k.layer == a.layer || a.wroteBelow(k) {
			return true
		}
	}
	return false
}

// files lists the tree by absolute path; a hardlink group left with one
// path is no group.
func (a *applier) files() map[string]*file {
	out := map[string]*file{}
	var walk func(p string, n *anode)
	walk = func(p string, n *anode) {
		out[p] = n.f
		for name, k := range n.kids {
			walk(path.Join(p, name), k)
		}
	}
	walk("/", a.root)
	members := map[string]int{}
	for _, f := range out {
		if f.link != "" {
			members[f.link]++
		}
	}
	for p, f := range out {
		if f.link != "" && members[f.link] < 2 {
			cp := *f
			cp.link = ""
			out[p] = &cp
		}
	}
	return out
}
