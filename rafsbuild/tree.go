package rafsbuild

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/nydus-go/nydusify/rafs"
)

// Entry describes one file system object handed to the builder by a source
// (a directory walk, later a tar stream). Content travels separately.
type Entry struct {
	// Path is relative to the image root, "/"-separated, without "." or
	// ".." elements; "" is the root itself.
	Path      string
	Mode      uint32 // st_mode: file type and permission bits
	UID, GID  uint32
	Size      uint64 // regular files: content length
	Rdev      uint32 // devices: rafs.EncodeRdev(major, minor)
	Mtime     int64
	MtimeNsec uint32
	Target    string       // symlink target
	Xattrs    []rafs.Xattr // sorted by name for a stable on-disk order
	// LinkKey groups hardlinked regular files: entries with the same non-zero
	// key share one inode. Directory walks use the source (dev, ino).
	LinkKey LinkKey
}

// LinkKey identifies the source inode of a regular file.
type LinkKey struct{ Dev, Ino uint64 }

// ErrUnsupported is wrapped by errors about inputs RAFS cannot represent.
var ErrUnsupported = errors.New("unsupported input")

// node is one path of the tree being built, with its layout once computed.
type node struct {
	name   string
	entry  Entry
	parent *node // the root is its own parent
	// synthetic marks directories the builder made up (the root of a tar
	// without one, missing parents): they carry no metadata to overlay.
	synthetic bool
	children  []*node

	data *fileData // regular files: content, shared by hardlinked paths

	// Layout (layout.go).
	index uint32 // position in visiting order, root = 1
	// firstChild is a directory's first child's index (RAFS v5 records it).
	firstChild uint32
	ino        uint32 // index of the first path of a hardlink group
	nlink      uint32
	primary    *node  // hardlinks: the first path, which owns placement and data
	offset     uint64 // inode position before the meta shift
	dataOff    uint64 // dirent/symlink data position before the meta shift
	dataLay    int    // rafs.LayoutFlatPlain / FlatInline / ChunkBased
	dataSize   uint64 // i_size
	xattrLen   int
}

// fileData is the content of a regular file: its chunks once written.
type fileData struct {
	size   uint64
	chunks []chunkRef
	shared bool // named by more than one path (hardlinks)
}

// path returns n's absolute path in the tree.
func (n *node) path() string {
	if n.parent == n {
		return "/"
	}
	var parts []string
	for ; n.parent != n; n = n.parent {
		parts = append(parts, n.name)
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

func (n *node) isDir() bool     { return n.entry.Mode&rafs.ModeFmt == rafs.ModeDir }
func (n *node) isReg() bool     { return n.entry.Mode&rafs.ModeFmt == rafs.ModeReg }
func (n *node) isSymlink() bool { return n.entry.Mode&rafs.ModeFmt == rafs.ModeLnk }

// tree is a directory hierarchy built from entries in any order.
type tree struct {
	root  *node
	dirs  map[string]*node
	links map[LinkKey]*fileData
	// assumedDirs lists directories a layer's own symlink resolution
	// assumed are no symlinks in the layers below (resolve.go).
	assumedDirs []string
}

func newTree() *tree {
	root := &node{entry: Entry{Mode: rafs.ModeDir | 0o755}, synthetic: true}
	root.parent = root
	return &tree{root: root, dirs: map[string]*node{"": root}, links: map[LinkKey]*fileData{}}
}

// validate rejects what RAFS cannot store, with upstream's wording in mind.
func validateEntry(e *Entry) error {
	name := path.Base(e.Path)
	switch {
	case e.Mode&rafs.ModeFmt == rafs.ModeSock:
		return fmt.Errorf("%w: %s is a socket; RAFS images cannot carry sockets", ErrUnsupported, e.Path)
	case rafs.FileTypeOfMode(e.Mode) == rafs.FTUnknown:
		return fmt.Errorf("%w: %s has unknown file type %#o", ErrUnsupported, e.Path, e.Mode&rafs.ModeFmt)
	case e.Path != "" && len(name) > rafs.MaxNameLen:
		return fmt.Errorf("%w: %s: file name of %d bytes exceeds the %d-byte limit", ErrUnsupported, e.Path, len(name), rafs.MaxNameLen)
	case e.Mode&rafs.ModeFmt == rafs.ModeLnk && (len(e.Target) == 0 || len(e.Target) > rafs.MaxSymlinkLen):
		return fmt.Errorf("%w: %s: symlink target of %d bytes (must be 1..%d)", ErrUnsupported, e.Path, len(e.Target), rafs.MaxSymlinkLen)
	}
	if _, err := rafs.XattrAreaSize(e.Xattrs); err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	return nil
}

// add inserts e; its parent directory must already be present. It returns
// the new node.
func (t *tree) add(e Entry) (*node, error) {
	if err := validateEntry(&e); err != nil {
		return nil, err
	}
	if e.Path == "" {
		if e.Mode&rafs.ModeFmt != rafs.ModeDir {
			return nil, fmt.Errorf("%w: the root is not a directory", ErrUnsupported)
		}
		t.root.entry, t.root.synthetic = e, false
		return t.root, nil
	}
	dir, name := path.Split(e.Path)
	parent, ok := t.dirs[strings.TrimSuffix(dir, "/")]
	if !ok {
		return nil, fmt.Errorf("adding %s: parent directory missing", e.Path)
	}
	n := &node{name: name, entry: e, parent: parent}
	if n.isReg() {
		if prev, ok := t.links[e.LinkKey]; ok && e.LinkKey != (LinkKey{}) {
			if prev.size != e.Size {
				return nil, fmt.Errorf("hardlink %s: size %d differs from its other paths' %d", e.Path, e.Size, prev.size)
			}
			prev.shared = true
			n.data = prev
		} else {
			n.data = &fileData{size: e.Size}
			if e.LinkKey != (LinkKey{}) {
				t.links[e.LinkKey] = n.data
			}
		}
	}
	parent.children = append(parent.children, n)
	if n.isDir() {
		t.dirs[e.Path] = n
	}
	return n, nil
}

// sortChildren orders every directory's children by raw name bytes, the
// order of dirents and of inode numbering (§1.10, §1.14).
func sortChildren(n *node) {
	slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	for _, c := range n.children {
		if c.isDir() {
			sortChildren(c)
		}
	}
}

// walkBFS visits nodes breadth first (root, its children, then each child
// directory's children in order), the order upstream dumps inodes in.
func (t *tree) walkBFS(fn func(n *node)) {
	queue := []*node{t.root}
	fn(t.root)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, c := range d.children {
			fn(c)
			if c.isDir() {
				queue = append(queue, c)
			}
		}
	}
}
