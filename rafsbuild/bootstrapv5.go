package rafsbuild

import (
	"encoding/binary"
	"fmt"

	"github.com/nydus-go/nydusify/rafs"
)

// writeBootstrapV5 serialises a laid-out tree into a RAFS v5 bootstrap
// (§4), as upstream's v5 builder lays it out: superblock, inode table,
// prefetch table, blob table, extended blob table, each padded to 8 bytes,
// then one record per path in depth-first pre-order. Indexes are layout's
// (a directory's children consecutive); hardlinked paths get their own
// records with the group's inode number. Digests form the Merkle tree of
// §4.1, computed children first.
func writeBootstrapV5(t *tree, lay *layoutResult, p *bootstrapParams) ([]byte, error) {
	digests := v5Digests(lay.order, p)

	entries := uint64(len(lay.order))
	itSize := rafs.V5Align8(4 * entries)
	var prefetch []uint32
	for _, n := range p.prefetch {
		prefetch = append(prefetch, n.index)
	}
	ptSize := rafs.V5Align8(4 * uint64(len(prefetch)))
	var blobTable []byte
	for i, b := range p.blobs {
		if i > 0 {
			blobTable = append(blobTable, 0)
		}
		blobTable = binary.LittleEndian.AppendUint64(blobTable, 0) // readahead offset and size
		blobTable = append(blobTable, b.BlobID...)
	}
	btSize := rafs.V5Align8(uint64(len(blobTable)))
	extSize := uint64(len(p.blobs)) * rafs.V5ExtBlobEntrySize

	itOff := uint64(rafs.V5SuperBlockSize)
	ptOff := itOff + itSize
	btOff := ptOff + ptSize
	extOff := btOff + btSize
	pos := extOff + extSize

	// Record offsets, depth-first pre-order.
	offsets := make([]uint64, entries+1)
	size := func(n *node) uint64 {
		s := rafs.V5InodeSize + rafs.V5Align8(uint64(len(v5Name(n)))) + rafs.V5Align8(uint64(len(n.entry.Target)))
		if len(n.entry.Xattrs) > 0 {
			s += 8 + rafs.V5Align8(rafs.V5XattrSize(n.entry.Xattrs))
		}
		if n.isReg() && n.data != nil {
			s += uint64(len(n.data.chunks)) * rafs.ChunkTableEntrySize
		}
		return s
	}
	var place func(n *node)
	place = func(n *node) {
		offsets[n.index] = pos
		pos += size(n)
		for _, c := range n.children {
			place(c)
		}
	}
	place(t.root)
	if pos>>3 > 1<<32-1 {
		return nil, fmt.Errorf("%w: a RAFS v5 bootstrap of %d bytes exceeds the inode table's reach", ErrUnsupported, pos)
	}

	buf := make([]byte, pos)
	flags := p.flags | rafs.FlagExplicitUIDGID
	if lay.hasXattr {
		flags |= rafs.FlagHasXattr
	}
	inodes := uint64(0)
	for _, n := range lay.order {
		if n.primary == nil {
			inodes++
		}
		binary.LittleEndian.PutUint32(buf[itOff+4*uint64(n.index-1):], uint32(offsets[n.index]>>3))
		if err := writeRecordV5(buf[offsets[n.index]:], n, p, digests[n.index]); err != nil {
			return nil, err
		}
	}
	for i, x := range prefetch {
		binary.LittleEndian.PutUint32(buf[ptOff+4*uint64(i):], x)
	}
	copy(buf[btOff:], blobTable)
	for i, b := range p.blobs {
		x := rafs.V5ExtBlobEntry{ChunkCount: b.ChunkCount, Features: b.Features,
			UncompressedSize: b.UncompressedSize, CompressedSize: b.CompressedSize}
		x.MarshalTo(buf[extOff+uint64(i)*rafs.V5ExtBlobEntrySize:])
	}
	sb := rafs.V5SuperBlock{
		Magic: rafs.V5Magic, Version: rafs.V5Version, SBSize: rafs.V5SuperBlockSize,
		BlockSize: uint32(p.chunkSize), Flags: flags, InodesCount: inodes,
		InodeTableOffset: itOff, InodeTableEntries: uint32(entries),
		PrefetchTableOffset: ptOff, PrefetchTableEntries: uint32(len(prefetch)),
		BlobTableOffset: btOff, BlobTableSize: uint32(btSize),
		ExtBlobTableOffset: extOff, ExtBlobTableEntries: uint32(len(p.blobs)),
	}
	sb.MarshalTo(buf)
	return buf, nil
}

// v5Name is the name a record stores: the root's is "/".
func v5Name(n *node) string {
	if n.parent == n {
		return "/"
	}
	return n.name
}

// v5Digests returns every node's digest (§4.1), indexed by node index. A
// child's index is above its parent's, so walking the visiting order
// backwards hashes children first.
func v5Digests(order []*node, p *bootstrapParams) [][32]byte {
	digests := make([][32]byte, len(order)+1)
	h := p.digester().New()
	var sum []byte
	for k := len(order) - 1; k >= 0; k-- {
		n := order[k]
		h.Reset()
		switch {
		case n.isDir():
			for _, c := range n.children {
				h.Write(digests[c.index][:])
			}
		case n.isReg() && n.data != nil:
			for _, c := range n.data.chunks {
				h.Write(c.digest[:])
			}
		case n.isSymlink():
			h.Write([]byte(n.entry.Target))
		}
		sum = h.Sum(sum[:0])
		copy(digests[n.index][:], sum)
	}
	return digests
}

// digester is the digest algorithm the superblock flags name.
func (p *bootstrapParams) digester() rafs.Digester {
	if p.flags&rafs.FlagHashSha256 != 0 {
		return rafs.DigestSha256
	}
	return rafs.DigestBlake3
}

// writeRecordV5 writes n's record (§4) at the start of b.
func writeRecordV5(b []byte, n *node, p *bootstrapParams, digest [32]byte) error {
	e := &n.entry
	name := v5Name(n)
	ino := rafs.V5Inode{
		Digest: digest, Parent: uint64(n.parent.ino), Ino: uint64(n.ino),
		UID: e.UID, GID: e.GID, Mode: e.Mode, Size: n.dataSize, Nlink: n.nlink,
		NameSize: uint16(len(name)), SymlinkSize: uint16(len(e.Target)),
		Mtime: uint64(e.Mtime), MtimeNsec: e.MtimeNsec,
	}
	if n.parent == n {
		ino.Parent = 0
	}
	var xattrSize uint64
	if len(e.Xattrs) > 0 {
		ino.Flags |= rafs.V5InodeXattr
		xattrSize = rafs.V5Align8(rafs.V5XattrSize(e.Xattrs))
	}
	switch {
	case n.isDir():
		// A pseudo size upstream computes for repeatable builds.
		var s uint64
		for _, c := range n.children {
			s += uint64(len(c.name)) + 8
		}
		ino.Size = max(rafs.AlignUp(s, rafs.BlockSize), rafs.BlockSize)
		ino.ChildIndex, ino.ChildCount = n.firstChild, uint32(len(n.children))
	case n.isSymlink():
		ino.Flags |= rafs.V5InodeSymlink
	case n.isReg():
		ino.Size = e.Size
		if n.data != nil {
			ino.ChildCount = uint32(len(n.data.chunks))
		}
	default:
		ino.Size = 0
		ino.Rdev = e.Rdev
	}
	ino.Blocks = (ino.Size + xattrSize + 511) / 512
	ino.MarshalTo(b)
	pos := uint64(rafs.V5InodeSize)
	copy(b[pos:], name)
	pos += rafs.V5Align8(uint64(len(name)))
	copy(b[pos:], e.Target)
	pos += rafs.V5Align8(uint64(len(e.Target)))
	pos += uint64(copy(b[pos:], rafs.AppendV5Xattrs(nil, e.Xattrs)))
	if n.isReg() && n.data != nil {
		for i, c := range n.data.chunks {
			blob, ok := p.blobIndex[c.blob]
			if !ok {
				return fmt.Errorf("internal error: %s references a blob missing from the blob table", e.Path)
			}
			rec := c.record(blob, uint64(i)*p.chunkSize)
			rec.MarshalTo(b[pos:])
			pos += rafs.ChunkTableEntrySize
		}
	}
	return nil
}
