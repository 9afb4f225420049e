package rafsbuild

import (
	"fmt"

	"github.com/nydus-go/nydusify/rafs"
)

// The layout engine places every inode, dirent block and symlink target of
// the tree in the meta area exactly as upstream's builder does (§1.14), so
// nids, and with them every byte of the bootstrap, match. Positions are
// "pre-shift": the root sits at 4096 and the serialiser adds meta_addr.

// allocator hands out meta-area space: a bump cursor plus 128 FIFO queues of
// partly used blocks, queue k holding blocks with 32·k free bytes at the end.
type allocator struct {
	bs        uint64
	inodeSize uint64 // always extended (64) in images; tests use compact (32)
	cursor    uint64
	free      [][]uint64
}

func newAllocator(bs uint64) *allocator {
	return &allocator{bs: bs, inodeSize: rafs.InodeExtendedSize, cursor: rafs.BlockSize,
		free: make([][]uint64, bs/rafs.InodeSlotSize)}
}

// giveFree records the rest of p's block as free space.
func (a *allocator) giveFree(p uint64) {
	if rem := p % a.bs; rem != 0 {
		k := (a.bs - rem) / rafs.InodeSlotSize
		a.free[k] = append(a.free[k], p-rem)
	}
}

// takeFree returns the end of the first partly used block, smallest fit
// first, with room for size bytes.
func (a *allocator) takeFree(size uint64) (uint64, bool) {
	if size >= a.bs {
		return 0, false
	}
	lo := (size + rafs.InodeSlotSize - 1) / rafs.InodeSlotSize
	for k := lo; k < uint64(len(a.free)); k++ {
		if len(a.free[k]) == 0 {
			continue
		}
		b := a.free[k][0]
		a.free[k] = a.free[k][1:]
		off := b + a.bs - rafs.InodeSlotSize*k
		a.giveFree(off + rafs.InodeSlotSize*lo)
		return off, true
	}
	return 0, false
}

// take places size bytes: free space first, else at the cursor.
func (a *allocator) take(size uint64) uint64 {
	if off, ok := a.takeFree(size); ok {
		return off
	}
	off := a.cursor
	a.cursor += size
	return off
}

func (a *allocator) alignCursor(to uint64) { a.cursor = rafs.AlignUp(a.cursor, to) }

// toBlock gives away the rest of the cursor's block and moves to the next.
func (a *allocator) toBlock() {
	a.giveFree(a.cursor)
	a.alignCursor(a.bs)
}

// placeWithTail lays out a directory or symlink whose data is d bytes:
// inline tail after the inode when it fits in one block, else plain blocks.
func (a *allocator) placeWithTail(n *node, d uint64) {
	isz := a.inodeSize + uint64(n.xattrLen)
	tail := d % a.bs
	if tail != 0 && isz+tail <= a.bs {
		n.dataLay = rafs.LayoutFlatInline
		off, ok := a.takeFree(isz + tail)
		if !ok {
			if a.bs-a.cursor%a.bs < isz+tail {
				a.toBlock()
			}
			off = a.cursor
			a.cursor += isz + tail
		}
		n.offset = off
		if d != tail {
			a.toBlock()
		}
		n.dataOff = a.cursor
		a.cursor += d - tail
		return
	}
	n.dataLay = rafs.LayoutFlatPlain
	n.offset = a.take(isz)
	a.toBlock()
	n.dataOff = a.cursor
	a.cursor = rafs.AlignUp(a.cursor+d, a.bs)
}

func (a *allocator) placeNonDir(n *node, chunkSize uint64) {
	isz := a.inodeSize + uint64(n.xattrLen)
	switch {
	case n.isReg():
		n.dataLay = rafs.LayoutChunkBased
		nchunks := (n.entry.Size + chunkSize - 1) / chunkSize
		n.offset = a.take(rafs.AlignUp(isz, rafs.ChunkAddrSize) + rafs.ChunkAddrSize*nchunks)
	case n.isSymlink():
		a.placeWithTail(n, uint64(len(n.entry.Target)))
	default:
		n.dataLay = rafs.LayoutFlatPlain
		n.offset = a.cursor
		a.cursor += isz
	}
	a.alignCursor(rafs.InodeSlotSize)
}

// dirent is one entry of a directory as written: target is nil for "." and
// "..", which the serialiser resolves.
type dirent struct {
	name   string
	target *node
}

// dirents lists a directory's entries in on-disk order: "." and ".." sort
// among the children by raw bytes (§1.10).
func dirents(n *node) []dirent {
	out := make([]dirent, 0, len(n.children)+2)
	dots := []string{".", ".."}
	for _, c := range n.children {
		for len(dots) > 0 && dots[0] < c.name {
			out = append(out, dirent{name: dots[0]})
			dots = dots[1:]
		}
		out = append(out, dirent{name: c.name, target: c})
	}
	for _, d := range dots {
		out = append(out, dirent{name: d})
	}
	return out
}

// packDirents splits entries into blocks: a block ends when the next entry
// (12 bytes plus its name) would not fit. It returns the index at which each
// block starts and the directory's i_size: full blocks counted whole plus the
// bytes used in the last one.
func packDirents(ents []dirent, bs uint64) (starts []int, size uint64) {
	var used uint64
	starts = []int{0}
	for i, e := range ents {
		need := uint64(rafs.DirentSize + len(e.name))
		if used+need > bs {
			size += bs
			used = 0
			starts = append(starts, i)
		}
		used += need
	}
	return starts, size + used
}

// layoutResult is what the serialiser needs beyond the nodes themselves.
type layoutResult struct {
	metaSize uint64  // end of the meta area, pre-shift, block aligned
	inodes   uint32  // last index assigned: the superblock's inos
	order    []*node // paths in visiting order (index order)
	hasXattr bool
}

// layout numbers the tree and places every node; children must be sorted.
func layout(t *tree, chunkSize uint64) (*layoutResult, error) {
	a := newAllocator(rafs.BlockSize)
	res := &layoutResult{}
	groups := map[*fileData][]*node{}
	next := uint32(1)
	t.root.index, t.root.ino = 1, 1
	res.order = append(res.order, t.root)
	var visit func(dir *node) error
	visit = func(dir *node) error {
		dir.firstChild = next + 1 // RAFS v5 records it even for an empty directory
		_, dir.dataSize = packDirents(dirents(dir), a.bs)
		a.placeWithTail(dir, dir.dataSize)
		a.alignCursor(rafs.InodeSlotSize)
		var subdirs []*node
		for _, c := range dir.children {
			if next == ^uint32(0) {
				return fmt.Errorf("%w: more than %d entries", ErrUnsupported, next)
			}
			next++
			c.index = next
			res.order = append(res.order, c)
			c.ino, c.nlink = c.index, 1
			if c.isReg() && c.data != nil && c.data.shared {
				if g := groups[c.data]; len(g) > 0 {
					first := g[0]
					g = append(g, c)
					groups[c.data] = g
					for _, m := range g {
						m.nlink = uint32(len(g))
					}
					c.ino, c.primary, c.offset, c.dataLay = first.ino, first, first.offset, first.dataLay
					continue
				}
				groups[c.data] = []*node{c}
			}
			if c.isDir() {
				subdirs = append(subdirs, c)
				continue
			}
			c.dataSize = c.entry.Size
			if c.isSymlink() {
				c.dataSize = uint64(len(c.entry.Target))
			} else if !c.isReg() {
				c.dataSize = 0
			}
			a.placeNonDir(c, chunkSize)
		}
		dir.nlink = uint32(2 + len(subdirs))
		for _, d := range subdirs {
			if err := visit(d); err != nil {
				return err
			}
		}
		return nil
	}
	if err := setXattrLens(t, res); err != nil {
		return nil, err
	}
	if err := visit(t.root); err != nil {
		return nil, err
	}
	res.inodes = next
	res.metaSize = rafs.AlignUp(a.cursor, a.bs)
	return res, nil
}

func setXattrLens(t *tree, res *layoutResult) error {
	var err error
	t.walkBFS(func(n *node) {
		if err != nil {
			return
		}
		n.xattrLen, err = rafs.XattrAreaSize(n.entry.Xattrs)
		if n.xattrLen > 0 {
			res.hasXattr = true
		}
	})
	return err
}
