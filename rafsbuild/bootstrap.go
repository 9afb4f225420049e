package rafsbuild

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/nydus-go/nydusify/rafs"
)

// bootstrapParams carries what the serialiser needs beyond the laid-out tree.
type bootstrapParams struct {
	version   int // RAFS version: 6, or 5 (bootstrapv5.go)
	flags     rafs.SuperFlags
	chunkSize uint64
	blobs     []rafs.BlobEntry
	blobIndex map[*blobWriter]uint32 // position in blobs of each chunk source
	prefetch  []*node                // the prefetch table's nodes, in order
}

// addBlobsByReference appends to p, in the order a breadth-first walk of t
// first references them, the blobs holding t's chunks that p does not list
// yet; entry gives each one's blob-table entry.
func (p *bootstrapParams) addBlobsByReference(t *tree, entry func(*blobWriter) rafs.BlobEntry) {
	t.walkBFS(func(n *node) {
		if !n.isReg() {
			return
		}
		for _, c := range n.data.chunks {
			if _, ok := p.blobIndex[c.blob]; !ok {
				p.blobIndex[c.blob] = uint32(len(p.blobs))
				p.blobs = append(p.blobs, entry(c.blob))
			}
		}
	})
}

type chunkKey struct {
	digest [32]byte
	blob   uint32
}

// writeBootstrap serialises a laid-out tree into a RAFS v6 bootstrap (§1.1):
// block 0 (superblocks, device slots), blob table, meta area shifted to
// meta_addr, then the chunk table; or, when p.version is 5, into a v5
// bootstrap (§4).
func writeBootstrap(t *tree, lay *layoutResult, p *bootstrapParams) ([]byte, error) {
	if p.version == 5 {
		return writeBootstrapV5(t, lay, p)
	}
	nblobs := uint64(len(p.blobs))
	if nblobs > rafs.MaxBlobs {
		return nil, fmt.Errorf("%w: %d blobs, at most %d", ErrUnsupported, nblobs, rafs.MaxBlobs)
	}
	bs := uint64(rafs.BlockSize)
	blobTable := rafs.AlignUp(rafs.DeviceSlotOffset+rafs.DeviceSlotSize*nblobs, bs)
	// The prefetch table follows the blob table when there are blobs (§1.6).
	prefetchOff := blobTable + rafs.BlobEntrySize*nblobs
	var prefetchSize uint64
	if nblobs > 0 {
		prefetchSize = 4 * uint64(len(p.prefetch))
	}
	var metaAddr uint64
	if nblobs > 0 {
		metaAddr = rafs.AlignUp(prefetchOff+prefetchSize, bs)
	}
	buf := make([]byte, metaAddr+lay.metaSize)
	for i := range prefetchSize / 4 {
		nid := p.prefetch[i].inodeNode().offset / rafs.InodeSlotSize
		binary.LittleEndian.PutUint32(buf[prefetchOff+4*i:], uint32(nid))
	}
	var flags = p.flags | rafs.FlagExplicitUIDGID | rafs.FlagEncryptionNone | rafs.FlagInlinedChunkDigest
	for _, b := range p.blobs {
		if b.Features&rafs.BlobInlinedChunkDigest == 0 {
			flags &^= rafs.FlagInlinedChunkDigest
		}
	}
	if lay.hasXattr {
		flags |= rafs.FlagHasXattr
	}

	// Inodes, in BFS order: positions are fixed, the order only decides which
	// path's file offset a shared chunk-table record keeps (§1.13).
	chunkTable := map[chunkKey]rafs.ChunkInfo{}
	var werr error
	t.walkBFS(func(n *node) {
		if werr == nil {
			werr = writeNode(buf, metaAddr, n, p, chunkTable)
		}
	})
	if werr != nil {
		return nil, werr
	}

	// Chunk table: sorted by digest, then blob index.
	records := make([]rafs.ChunkInfo, 0, len(chunkTable))
	for _, c := range chunkTable {
		records = append(records, c)
	}
	slices.SortFunc(records, func(a, b rafs.ChunkInfo) int {
		if c := bytes.Compare(a.Digest[:], b.Digest[:]); c != 0 {
			return c
		}
		return int(a.BlobIndex) - int(b.BlobIndex)
	})
	ctOff := uint64(len(buf))
	ct := make([]byte, rafs.AlignUp(uint64(len(records))*rafs.ChunkTableEntrySize, bs))
	for i := range records {
		records[i].MarshalTo(ct[i*rafs.ChunkTableEntrySize:])
	}
	buf = append(buf, ct...)

	// Block 0 and the blob table.
	var blocks uint32
	pos := uint64(len(buf))
	for i, b := range p.blobs {
		n := b.UncompressedSize / bs
		if n == 0 || n > 1<<32-1 || uint64(blocks)+n > 1<<32-1 {
			return nil, fmt.Errorf("%w: blob %s has %d blocks", ErrUnsupported, b.BlobID, n)
		}
		mapped := rafs.AlignUp(pos, 0x80000) / bs
		pos = (mapped + n) * bs
		blocks += uint32(n)
		slot := rafs.DeviceSlot{Tag: b.BlobID, Blocks: uint32(n), MappedBlkAddr: uint32(mapped)}
		slot.MarshalTo(buf[rafs.DeviceSlotOffset+uint64(i)*rafs.DeviceSlotSize:])
		b.BlobIndex = uint32(i)
		b.ChunkSize = uint32(p.chunkSize)
		b.MarshalTo(buf[blobTable+uint64(i)*rafs.BlobEntrySize:])
	}
	sb := rafs.SuperBlock{
		Magic: rafs.SuperMagic, FeatureCompat: rafs.FeatureCompatRafsV6, BlkSzBits: rafs.BlockSizeBits,
		RootNid: uint16(t.root.offset / rafs.InodeSlotSize), Inos: uint64(lay.inodes), Blocks: blocks,
		MetaBlkAddr: uint32(metaAddr / bs), FeatureIncompat: rafs.FeatureIncompatRafsV6,
		ExtraDevices: uint16(nblobs), DevtSlotOff: rafs.DevtSlotOff,
	}
	sb.MarshalTo(buf[rafs.SuperBlockOffset:])
	ext := rafs.ExtSuperBlock{
		Flags: flags, BlobTableSize: uint32(nblobs * rafs.BlobEntrySize), ChunkSize: uint32(p.chunkSize),
		ChunkTableOffset: ctOff, ChunkTableSize: uint64(len(records)) * rafs.ChunkTableEntrySize,
		BlobTableOffset: blobTable, // upstream records it even when the table is empty
	}
	if prefetchSize > 0 {
		ext.PrefetchTableOffset, ext.PrefetchTableSize = prefetchOff, uint32(prefetchSize)
	}
	ext.MarshalTo(buf[rafs.ExtSuperBlockOffset:])
	return buf, nil
}

func (n *node) mode() uint16 { return uint16(n.entry.Mode) }

// writeNode writes n's inode, xattrs and data (dirents, symlink target or
// chunk indexes) into buf, and records its chunks in the chunk table.
func writeNode(buf []byte, metaAddr uint64, n *node, p *bootstrapParams, table map[chunkKey]rafs.ChunkInfo) error {
	if n.primary != nil {
		// A hardlink: its inode is the first path's; only the chunk table
		// sees it again, as upstream dumps every path.
		return addChunks(n, p, table)
	}
	e := &n.entry
	ino := rafs.Inode{
		Format: uint16(n.dataLay) << 1, XattrCount: rafs.XattrICount(n.xattrLen), Mode: n.mode(),
		Size: n.dataSize, Ino: n.ino, UID: e.UID, GID: e.GID,
		Mtime: uint64(e.Mtime), MtimeNsec: e.MtimeNsec, Nlink: n.nlink,
	}
	off := metaAddr + n.offset
	body := off + rafs.InodeExtendedSize + uint64(n.xattrLen)
	var data []byte
	switch {
	case n.isDir():
		data = direntBytes(n)
	case n.isSymlink():
		data = []byte(e.Target)
	case n.isReg():
		ino.U = chunkFormat(n, p.chunkSize)
		if err := addChunks(n, p, table); err != nil {
			return err
		}
		idx := buf[rafs.AlignUp(body, rafs.ChunkAddrSize):]
		for i, c := range n.data.chunks {
			a := rafs.ChunkAddr{BlobIndex: uint8(p.blobIndex[c.blob]), CIIndex: c.ciIndex, BlkAddr: uint32(c.uoff / rafs.BlockSize)}
			a.MarshalTo(idx[i*rafs.ChunkAddrSize:])
		}
	default:
		ino.U = e.Rdev
	}
	if data != nil {
		ino.U = uint32((metaAddr + n.dataOff) / rafs.BlockSize)
		full := uint64(len(data))
		if n.dataLay == rafs.LayoutFlatInline {
			full -= full % rafs.BlockSize
			copy(buf[body:], data[full:])
		}
		copy(buf[metaAddr+n.dataOff:], data[:full])
	}
	ino.MarshalExtended(buf[off:])
	copy(buf[off+rafs.InodeExtendedSize:], rafs.MarshalXattrs(nil, e.Xattrs))
	return nil
}

func addChunks(n *node, p *bootstrapParams, table map[chunkKey]rafs.ChunkInfo) error {
	for i, c := range n.data.chunks {
		blob, ok := p.blobIndex[c.blob]
		if !ok || int(blob) >= len(p.blobs) {
			return fmt.Errorf("internal error: %s references a blob missing from the blob table", n.entry.Path)
		}
		table[chunkKey{c.digest, blob}] = c.record(blob, uint64(i)*p.chunkSize)
	}
	return nil
}

// record is chunk c's 80-byte record (§1.13) as blob index blob, at offset
// fileOff of a file.
func (c *chunkRec) record(blob uint32, fileOff uint64) rafs.ChunkInfo {
	flags := rafs.ChunkHasCRC32
	if c.compressed {
		flags |= rafs.ChunkCompressed
	}
	return rafs.ChunkInfo{
		Digest: c.digest, BlobIndex: blob, Flags: flags,
		CompressedSize: c.csize, UncompressedSize: c.usize,
		CompressedOffset: c.coff, UncompressedOffset: c.uoff,
		FileOffset: fileOff, Index: c.ciIndex, CRC32: c.crc,
	}
}

// chunkFormat returns i_u of a regular file: the EROFS chunk size bits plus
// the 8-byte-index flag. A file whose chunks lie back to back in the blob
// declares one chunk of next_power_of_two(size) so the kernel maps it as one
// extent; it still carries one index per superblock chunk (§1.9).
func chunkFormat(n *node, chunkSize uint64) uint32 {
	c := chunkSize
	if n.entry.Size > chunkSize {
		continuous := true
		for i := 1; i < len(n.data.chunks); i++ {
			if n.data.chunks[i-1].uoff+chunkSize != n.data.chunks[i].uoff {
				continuous = false
				break
			}
		}
		if continuous {
			c = uint64(1) << bits.Len64(n.entry.Size-1)
		}
	}
	return uint32(bits.Len64(c)-1-rafs.BlockSizeBits) | 0x20
}

// direntBytes packs a directory's dirents (§1.10): per block, all 12-byte
// records, then the names back to back.
func direntBytes(n *node) []byte {
	ents := dirents(n)
	starts, size := packDirents(ents, rafs.BlockSize)
	out := make([]byte, size)
	starts = append(starts, len(ents))
	for b := 0; b+1 < len(starts); b++ {
		blk := out[uint64(b)*rafs.BlockSize:]
		group := ents[starts[b]:starts[b+1]]
		nameOff := len(group) * rafs.DirentSize
		for i, e := range group {
			target := e.target
			switch e.name {
			case ".":
				target = n
			case "..":
				target = n.parent
			}
			nid := target.inodeNode().offset / rafs.InodeSlotSize
			d := rafs.Dirent{Nid: nid, NameOff: uint16(nameOff), FileType: rafs.FileTypeOfMode(target.entry.Mode)}
			d.MarshalTo(blk[i*rafs.DirentSize:])
			nameOff += copy(blk[nameOff:], e.name)
		}
	}
	return out
}

// inodeNode is the node whose inode a path uses: itself, or the first path
// of its hardlink group.
func (n *node) inodeNode() *node {
	if n.primary != nil {
		return n.primary
	}
	return n
}
