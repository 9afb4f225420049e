package rafsbuild

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/nydus-go/nydusify/rafs"
)

// merger stacks layer trees the way containerd applies layer tars onto a
// root filesystem (see resolve.go): each layer is replayed entry by entry
// onto the merged tree, a directory the layer did not describe (an implied
// parent) is looked up in the merged tree, and when it is a symlink there,
// the layer's entries below it land where the symlink leads.
//
// A layer tree keeps no tar order, so it is replayed in one fixed order: in
// each directory the opaque marker, then whiteouts, then entries by name.
// Whiteouts and opaque markers hide what the layers below wrote, never
// what their own layer wrote (image-spec layer.md), which makes their order
// within a layer irrelevant. What would still depend on the tar order is
// refused with an error naming the path: a lower symlink that the layer both
// resolves paths through and removes or replaces, and a lower path the layer
// both writes into (through a symlink) and replaces.
type merger struct {
	root  *node
	layer int // 1-based, for errors
	// fresh holds the nodes the current layer wrote (entries, and parents it
	// implied that did not exist).
	fresh map[*node]bool
	// traversed and removed hold the tree paths of lower symlinks the current
	// layer resolved paths through, and of those it removed or replaced.
	traversed, removed map[string]bool
}

func newMerger() *merger {
	root := &node{entry: Entry{Mode: rafs.ModeDir | 0o755}, synthetic: true}
	root.parent = root
	return &merger{root: root}
}

// apply replays the layer tree up onto the merged tree.
func (m *merger) apply(up *tree, layer int) error {
	m.layer = layer
	m.fresh, m.traversed, m.removed = map[*node]bool{}, map[string]bool{}, map[string]bool{}
	for _, q := range up.assumedDirs {
		if err := m.checkAssumed(q); err != nil {
			return err
		}
	}
	if !up.root.synthetic {
		m.root.entry = up.root.entry
		m.root.synthetic = false
	}
	return m.replay(m.root, up.root.children)
}

func (m *merger) errorf(format string, args ...any) error {
	return fmt.Errorf("layer %d: %w: %s", m.layer, ErrUnsupported, fmt.Sprintf(format, args...))
}

// checkAssumed verifies what the layer build assumed when a relative
// symlink target's ".." stepped out of directory q: that q is no symlink
// below, or the ".." would have left where q leads instead.
func (m *merger) checkAssumed(q string) error {
	dir, name := path.Split(q)
	r := resolver{root: m.root}
	res, err := r.resolveDir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil // nothing is there to lead elsewhere; replay reports it
	}
	if n := m.lookup(joinPath(res, name)); n != nil && n.isSymlink() {
		return m.errorf("a symlink target of this layer steps out of /%s with \"..\", and /%s is a symlink in the layers below: "+
			"where the \"..\" leads depends on it, which a layer built on its own cannot represent", q, joinPath(res, name))
	}
	return nil
}

// lookup returns the node at tree path p without following symlinks.
func (m *merger) lookup(p string) *node {
	n := m.root
	for _, name := range splitPath(p) {
		if n = n.child(name); n == nil {
			return nil
		}
	}
	return n
}

// replay applies the children kids of an upper directory onto the merged
// directory d.
func (m *merger) replay(d *node, kids []*node) error {
	for _, c := range kids {
		if c.name == whiteoutOpaque {
			for _, k := range slices.Clone(d.children) {
				if err := m.hide(d, k); err != nil {
					return err
				}
			}
		}
	}
	for _, c := range kids {
		name, ok := strings.CutPrefix(c.name, whiteoutPrefix)
		if !ok || c.name == whiteoutOpaque {
			continue
		}
		k := d.child(name)
		if k == nil {
			continue
		}
		// `.wh.a` with entries below a but no entry for a itself: when a
		// is a symlink or file below, the entries land through the link
		// (or fail) if they come first in the tar, in a new directory if
		// the whiteout comes first.
		if !k.isDir() {
			for _, s := range kids {
				if s.name == name && s.synthetic {
					return m.errorf("%s has a whiteout and entries below it but no entry of its own, and is %s below: "+
						"the result depends on their tar order", path.Join(d.path(), name), typeName(k))
				}
			}
		}
		if err := m.hide(d, k); err != nil {
			return err
		}
	}
	for _, c := range kids {
		if strings.HasPrefix(c.name, whiteoutPrefix) {
			continue
		}
		if c.synthetic {
			t, err := m.enter(d, c.name)
			if err != nil {
				return err
			}
			if err := m.replay(t, c.children); err != nil {
				return err
			}
			continue
		}
		old := d.child(c.name)
		if old != nil && old.isDir() && c.isDir() {
			e := c.entry
			e.Path = old.entry.Path
			old.entry, old.synthetic = e, false
			m.fresh[old] = true
			if err := m.replay(old, c.children); err != nil {
				return err
			}
			continue
		}
		if old != nil {
			if m.fresh[old] || m.hasFresh(old) {
				return m.errorf("%s is written by this layer through a symlink and replaced by it: the result depends on their tar order",
					old.path())
			}
			if err := m.remove(d, old); err != nil {
				return err
			}
		}
		below := c.children
		c.children = nil
		m.attach(d, c)
		if c.isDir() {
			if err := m.replay(c, below); err != nil {
				return err
			}
		}
	}
	return nil
}

// attach makes c a child of d, written by the current layer.
func (m *merger) attach(d, c *node) {
	c.parent = d
	c.entry.Path = joinPath(d.entry.Path, c.name)
	d.children = append(d.children, c)
	m.fresh[c] = true
}

// impliedDir is a parent no entry describes, as containerd creates it
// (mode 0755) and as upstream records it (owner 0, mtime 0).
func impliedDir(p string) Entry { return Entry{Path: p, Mode: rafs.ModeDir | 0o755} }

// enter returns the merged directory that entries below d/name land in when
// the layer did not describe d/name itself: the directory there, one made
// for them, or where a symlink there leads.
func (m *merger) enter(d *node, name string) (*node, error) {
	p := joinPath(d.entry.Path, name)
	if err := m.checkNotRemoved(p); err != nil {
		return nil, err
	}
	k := d.child(name)
	switch {
	case k == nil:
		k = &node{name: name, entry: impliedDir(p), synthetic: true}
		m.attach(d, k)
		return k, nil
	case k.isDir():
		return k, nil
	case !k.isSymlink():
		return nil, fmt.Errorf("layer %d: %w: /%s holds entries of this layer but is %s", m.layer, errNotDir, p, typeName(k))
	}
	r := resolver{root: m.root, step: func(q string, n *node) error {
		if err := m.checkNotRemoved(q); err != nil {
			return err
		}
		if n != nil && n.isSymlink() && !m.fresh[n] {
			m.traversed[q] = true
		}
		return nil
	}}
	res, err := r.resolveDir(p)
	if err != nil {
		return nil, fmt.Errorf("layer %d: entries below /%s: %w", m.layer, p, err)
	}
	t := m.root
	for _, part := range splitPath(res) {
		next := t.child(part)
		if next == nil {
			next = &node{name: part, entry: impliedDir(joinPath(t.entry.Path, part)), synthetic: true}
			m.attach(t, next)
		}
		t = next
	}
	return t, nil
}

// checkNotRemoved refuses to resolve through, or write at, the path of a
// lower symlink this layer removed: had the tar carried the removal later,
// the path would have led through the symlink.
func (m *merger) checkNotRemoved(p string) error {
	if m.removed[p] {
		return m.errorf("/%s is a symlink below that this layer both removes and resolves paths through: "+
			"the result depends on their tar order", p)
	}
	return nil
}

// remove deletes c, a child of d that the layers below wrote, with its
// subtree, remembering the symlinks it removes.
func (m *merger) remove(d, c *node) error {
	var err error
	var visit func(n *node)
	visit = func(n *node) {
		if n.isSymlink() {
			p := n.entry.Path
			if m.traversed[p] && err == nil {
				err = m.errorf("/%s is a symlink below that this layer both resolves paths through and removes: "+
					"the result depends on their tar order", p)
			}
			m.removed[p] = true
		}
		for _, k := range n.children {
			visit(k)
		}
	}
	visit(c)
	d.removeChildNamed(c.name)
	return err
}

// hide applies a whiteout to c, a child of d: what the layers below wrote
// goes, what this layer wrote stays. A directory of the layers below that
// this layer wrote into (through a symlink) stays as the directory this
// layer's entries imply, as if the whiteout had come first in the tar.
func (m *merger) hide(d, c *node) error {
	if !m.fresh[c] && !m.hasFresh(c) {
		return m.remove(d, c)
	}
	if !m.fresh[c] {
		c.entry, c.synthetic = impliedDir(c.entry.Path), true
		m.fresh[c] = true
	}
	for _, k := range slices.Clone(c.children) {
		if err := m.hide(c, k); err != nil {
			return err
		}
	}
	return nil
}

// hasFresh reports whether the current layer wrote anything below n.
func (m *merger) hasFresh(n *node) bool {
	for _, c := range n.children {
		if m.fresh[c] || m.hasFresh(c) {
			return true
		}
	}
	return false
}
