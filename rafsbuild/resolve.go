package rafsbuild

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Symlinks used as parents. containerd's applier (the reference for how a
// runtime unpacks a layer) resolves the parent directory of every tar entry,
// whiteout and hardlink target through the symlinks already on disk, scoped
// to the root: an absolute target starts again at the root, a relative one
// at the link's directory, ".." is taken lexically and stops at the root.
// Only the entry's own last component is never followed. So `a -> /etc`
// then `a/passwd` writes /etc/passwd, in one layer or across layers.
//
// A layer is built on its own, without the layers below it, so BuildLayer
// resolves through the symlinks of its own layer only (resolveParent); a
// component it does not know stays a directory of its tree, and Merge
// resolves those through the symlinks of the layers below (apply.go).

// maxLinks bounds the symlinks followed for one path, as containerd does.
const maxLinks = 255

// errNotDir is wrapped by errors about a path whose parent is neither a
// directory nor a symlink: containerd fails to apply such a layer (ENOTDIR).
var errNotDir = fmt.Errorf("%w: not a directory", ErrUnsupported)

// resolver resolves paths within one tree. Its hooks, all optional, let the
// layer build and the merge watch what a resolution relied on.
type resolver struct {
	root *node
	// step is called for every component walked, with its tree path and
	// node (nil when absent), before it is followed.
	step func(p string, n *node) error
	// pop is called when a relative link target's ".." steps out of the
	// directory at p (n nil when the tree has nothing there).
	pop func(p string, n *node)
}

// resolveDir resolves dir (a tree path: "/"-separated, "" for the root, no
// "." or "..") following every symlink, its last component included, and
// returns the resolved tree path. Components that do not exist are kept as
// they are; one that exists and is neither a directory nor a symlink is an
// error.
func (r resolver) resolveDir(dir string) (string, error) {
	rest := splitPath(dir)
	var cur []string
	var nodes []*node // nodes[i] is the node at cur[:i+1], nil past the tree
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		var n *node
		if len(nodes) == 0 {
			n = r.root.child(name)
		} else if parent := nodes[len(nodes)-1]; parent != nil {
			n = parent.child(name)
		}
		p := strings.Join(append(cur[:len(cur):len(cur)], name), "/")
		if r.step != nil {
			if err := r.step(p, n); err != nil {
				return "", err
			}
		}
		if n == nil || n.isDir() {
			cur, nodes = append(cur, name), append(nodes, n)
			continue
		}
		if !n.isSymlink() {
			return "", fmt.Errorf("%w: /%s is used as a directory but is %s", errNotDir, p, typeName(n))
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%w: more than %d symlinks to follow from /%s", ErrUnsupported, maxLinks, dir)
		}
		target := path.Clean(n.entry.Target)
		var next []string
		if strings.HasPrefix(target, "/") {
			next = splitPath(target)
		} else {
			next = slices.Clone(cur)
			for target == ".." || strings.HasPrefix(target, "../") {
				target = strings.TrimPrefix(strings.TrimPrefix(target, ".."), "/")
				if len(next) == 0 {
					continue // ".." at the root stays at the root
				}
				if r.pop != nil {
					r.pop(strings.Join(next, "/"), nodes[len(next)-1])
				}
				next = next[:len(next)-1]
			}
			if target != "" && target != "." {
				next = append(next, splitPath(target)...)
			}
		}
		// Start again at the root: the prefix is known to be free of links,
		// and walking it again keeps nodes in step with cur.
		rest = append(next, rest...)
		cur, nodes = nil, nil
	}
	return strings.Join(cur, "/"), nil
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func typeName(n *node) string {
	switch {
	case n.isDir():
		return "a directory"
	case n.isReg():
		return "a regular file"
	case n.isSymlink():
		return "a symlink"
	}
	return "a special file"
}

// resolveParent maps the tree path p of a tar entry to where containerd
// puts it as far as this layer knows: its parent resolved through the
// layer's own symlinks. When a relative target's ".." steps out of a
// directory this layer did not describe, the result holds only if that
// directory is no symlink in the layers below; the path is remembered in
// t.assumedDirs for Merge to verify.
func (t *tree) resolveParent(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	dir, name := path.Split(p)
	r := resolver{root: t.root, pop: func(q string, n *node) {
		if n == nil || n.synthetic {
			t.assumedDirs = append(t.assumedDirs, q)
		}
	}}
	res, err := r.resolveDir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return "", err
	}
	return joinPath(res, name), nil
}

// resolveLinkTarget resolves a hardlink's target path like an entry's path
// (its last component is not followed: link(2) links a symlink itself) and
// refuses a directory, which link(2) cannot link.
func (t *tree) resolveLinkTarget(target string) (string, error) {
	res, err := t.resolveParent(target)
	if err != nil {
		return "", err
	}
	if n := t.dirs[res]; n != nil && n.isDir() {
		return "", fmt.Errorf("%w: hardlink target is directory %q; directories cannot be hardlinked", ErrUnsupported, res)
	}
	return res, nil
}
