package rafs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"path"
	"slices"
	"strings"
	"sync"
)

// Reader reads a RAFS bootstrap, v6 or v5 (told apart by magic; the v5
// metadata is mapped onto the same nodes, entries and chunk addresses). All
// methods are safe for concurrent use; Open validates the superblock and
// tables, and every later read checks its own bounds, so a malformed
// bootstrap yields ErrCorrupt, never a panic.
//
// For v5, Super carries only Inos, Ext only Flags, ChunkSize and
// ChunkTableSize, and there are no Devices; V5SuperBlock returns the rest.
type Reader struct {
	r         io.ReaderAt
	size      int64
	bs        uint64
	metaBase  uint64
	Super     SuperBlock
	Ext       ExtSuperBlock
	Devices   []DeviceSlot
	Blobs     []BlobEntry
	ChunkSize uint32

	tableOnce sync.Once // fills table: one pass over the chunk table
	table     []map[uint32]ChunkInfo
	tableErr  error

	v5 *v5Reader // nil for v6
}

// isV5 reports whether r starts with the RAFS v5 magic (§4).
func isV5(r io.ReaderAt, size int64) bool {
	var b [4]byte
	if size < 4 {
		return false
	}
	_, err := r.ReadAt(b[:], 0)
	return err == nil && le.Uint32(b[:]) == V5Magic
}

// identify tells by magic numbers what the bytes are before any size rule
// applies, so that a data blob or another file is named as what it is rather
// than reported as a corrupt v6 bootstrap.
func identify(r io.ReaderAt, size int64) error {
	var b [4]byte
	if size >= SuperBlockOffset+4 {
		if _, err := r.ReadAt(b[:], SuperBlockOffset); err == nil && le.Uint32(b[:]) == SuperMagic {
			return nil
		}
	}
	if size >= 512 {
		var hdr [100]byte
		if _, err := r.ReadAt(hdr[:], size-512); err == nil && bytes.HasPrefix(hdr[:], []byte(TOCName+"\x00")) {
			return corruptf("a Nydus data blob (it ends with the blob TOC), not a bootstrap: give the bootstrap (the .meta file, or image/image.boot of the bootstrap layer)")
		}
	}
	return corruptf("not a RAFS bootstrap: no EROFS superblock magic at offset %d and no RAFS v5 magic at 0", SuperBlockOffset)
}

// Open reads and validates the superblocks, device slots and blob table of
// the bootstrap held in r (size bytes), mirroring the checks nydusd makes
// when it loads an image (§1.16). A v5 bootstrap (§4) is read whole and
// checked throughout, its tree included.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	if isV5(r, size) {
		return openV5(r, size)
	}
	if err := identify(r, size); err != nil {
		return nil, err
	}
	if size < BlockSize || size%BlockSize != 0 {
		return nil, corruptf("bootstrap size %d is not a positive multiple of %d", size, BlockSize)
	}
	head := make([]byte, BlockSize)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("reading superblock: %w", err)
	}
	sb := UnmarshalSuperBlock(head[SuperBlockOffset:])
	switch {
	case sb.Magic != SuperMagic:
		return nil, corruptf("superblock magic %#x, not a RAFS v6 bootstrap", sb.Magic)
	case sb.Checksum != 0:
		return nil, corruptf("superblock checksum must be 0")
	case sb.FeatureCompat&FeatureCompatRafsV6 == 0:
		return nil, corruptf("superblock lacks the RAFS v6 compat feature")
	case sb.BlkSzBits != BlockSizeBits && sb.BlkSzBits != 9:
		return nil, corruptf("block size bits %d", sb.BlkSzBits)
	case sb.ExtSlots != 0:
		return nil, corruptf("sb_extslots %d", sb.ExtSlots)
	case sb.Inos == 0:
		return nil, corruptf("inode count 0")
	case sb.XattrBlkAddr != 0:
		return nil, corruptf("shared xattr block %d", sb.XattrBlkAddr)
	case sb.FeatureIncompat != FeatureIncompatRafsV6:
		return nil, corruptf("incompat features %#x", sb.FeatureIncompat)
	case sb.U1 != 0:
		return nil, corruptf("compression config in superblock")
	case sb.DevtSlotOff != DevtSlotOff:
		return nil, corruptf("device slot offset %d", sb.DevtSlotOff)
	case int(sb.ExtraDevices) > MaxBlobs:
		return nil, corruptf("%d extra devices", sb.ExtraDevices)
	}
	bs := uint64(1) << sb.BlkSzBits
	ext := UnmarshalExtSuperBlock(head[ExtSuperBlockOffset:])
	if ext.Flags&^knownSuperFlags != 0 {
		return nil, corruptf("unknown superblock flags %#x", uint64(ext.Flags&^knownSuperFlags))
	}
	if bits.OnesCount64(uint64(ext.Flags&compressionFlags)) != 1 {
		return nil, corruptf("superblock flags %#x name no single compressor", uint64(ext.Flags))
	}
	if bits.OnesCount64(uint64(ext.Flags&digestFlags)) != 1 {
		return nil, corruptf("superblock flags %#x name no single digester", uint64(ext.Flags))
	}
	if !validChunkSize(ext.ChunkSize) {
		return nil, corruptf("chunk size %#x", ext.ChunkSize)
	}
	rd := &Reader{r: r, size: size, bs: bs, Super: sb, Ext: ext, ChunkSize: ext.ChunkSize,
		metaBase: uint64(sb.MetaBlkAddr) * bs}
	if rd.metaBase >= uint64(size) {
		return nil, corruptf("meta block %d beyond the file", sb.MetaBlkAddr)
	}
	if err := rd.readTables(head); err != nil {
		return nil, err
	}
	return rd, nil
}

func validChunkSize(cs uint32) bool {
	return CheckChunkSize(cs) == nil
}

func (rd *Reader) inFile(off, n uint64) bool {
	return off <= uint64(rd.size) && n <= uint64(rd.size)-off
}

func (rd *Reader) readTables(head []byte) error {
	nblobs := int(rd.Super.ExtraDevices)
	slotEnd := DeviceSlotOffset + nblobs*DeviceSlotSize
	slots := head
	if slotEnd > len(head) {
		slots = make([]byte, slotEnd)
		if _, err := rd.r.ReadAt(slots, 0); err != nil {
			return fmt.Errorf("reading device table: %w", err)
		}
	}
	tags := map[string]bool{}
	var blocks uint64
	for i := 0; i < nblobs; i++ {
		d := UnmarshalDeviceSlot(slots[DeviceSlotOffset+i*DeviceSlotSize:])
		if d.Blocks == 0 {
			return corruptf("device slot %d has 0 blocks", i)
		}
		if tags[d.Tag] {
			return corruptf("device tag %q repeated", d.Tag)
		}
		tags[d.Tag] = true
		blocks += uint64(d.Blocks)
		rd.Devices = append(rd.Devices, d)
	}
	ext := rd.Ext
	if uint64(ext.BlobTableSize) != uint64(nblobs)*BlobEntrySize {
		return corruptf("blob table size %d for %d devices", ext.BlobTableSize, nblobs)
	}
	if nblobs > 0 {
		if ext.BlobTableOffset%BlockSize != 0 || ext.BlobTableOffset < uint64(slotEnd) ||
			!rd.inFile(ext.BlobTableOffset, uint64(ext.BlobTableSize)) {
			return corruptf("blob table at %#x size %#x", ext.BlobTableOffset, ext.BlobTableSize)
		}
		bt := make([]byte, ext.BlobTableSize)
		if _, err := rd.r.ReadAt(bt, int64(ext.BlobTableOffset)); err != nil {
			return fmt.Errorf("reading blob table: %w", err)
		}
		for i := 0; i < nblobs; i++ {
			e := UnmarshalBlobEntry(bt[i*BlobEntrySize:])
			if err := rd.validateBlob(i, &e); err != nil {
				return err
			}
			rd.Blobs = append(rd.Blobs, e)
		}
	}
	if ext.ChunkTableSize%ChunkTableEntrySize != 0 || (ext.ChunkTableSize > 0 &&
		(ext.ChunkTableOffset%BlockSize != 0 || !rd.inFile(ext.ChunkTableOffset, ext.ChunkTableSize))) {
		return corruptf("chunk table at %#x size %#x", ext.ChunkTableOffset, ext.ChunkTableSize)
	}
	if ext.PrefetchTableSize%4 != 0 || (ext.PrefetchTableSize > 0 &&
		!rd.inFile(ext.PrefetchTableOffset, uint64(ext.PrefetchTableSize))) {
		return corruptf("prefetch table at %#x size %#x", ext.PrefetchTableOffset, ext.PrefetchTableSize)
	}
	return nil
}

func (rd *Reader) validateBlob(i int, e *BlobEntry) error {
	switch {
	case e.BlobIndex != uint32(i):
		return corruptf("blob entry %d has index %d", i, e.BlobIndex)
	case e.ChunkSize != rd.ChunkSize:
		return corruptf("blob %d chunk size %#x differs from the superblock's %#x", i, e.ChunkSize, rd.ChunkSize)
	case e.ChunkCount > MaxChunksPerBlob:
		return corruptf("blob %d has %d chunks", i, e.ChunkCount)
	case e.Compressor > CompressZstd || e.MetaCompressor > CompressZstd:
		return corruptf("blob %d compressor %d/%d", i, e.Compressor, e.MetaCompressor)
	case e.Digester > DigestSha256:
		return corruptf("blob %d digester %d", i, e.Digester)
	case e.Features&(blobReservedFeatures|blobV5NoExtBlobTable) != 0:
		return corruptf("blob %d features %#x", i, uint32(e.Features))
	case e.MetaCompressedSize > e.MetaSize:
		return corruptf("blob %d chunk info compressed size exceeds its size", i)
	case e.Features&(BlobBatch|BlobZran|BlobEncrypted) != 0 && e.Features&BlobChunkInfoV2 == 0:
		return corruptf("blob %d features %#x need chunk info v2", i, uint32(e.Features))
	case e.CompressedSize > 1<<40 || e.UncompressedSize > 1<<44:
		return corruptf("blob %d sizes %d/%d", i, e.CompressedSize, e.UncompressedSize)
	}
	return nil
}

// FileSize returns the size of the bootstrap.
func (rd *Reader) FileSize() int64 { return rd.size }

// BlockSize returns the EROFS block size of the image.
func (rd *Reader) BlockSize() uint64 { return rd.bs }

// Node is a decoded inode together with its nid and xattrs.
type Node struct {
	Nid    uint64
	Inode  Inode
	Xattrs []Xattr
	offset uint64    // byte offset of the inode record
	v5     *v5Record // v5: the record itself
}

// Type returns the file type bits of the mode.
func (n *Node) Type() uint32 { return uint32(n.Inode.Mode) & ModeFmt }

// IsDir reports whether the node is a directory.
func (n *Node) IsDir() bool { return n.Type() == ModeDir }

// IsReg reports whether the node is a regular file.
func (n *Node) IsReg() bool { return n.Type() == ModeReg }

// bodyOffset is where inline data or chunk indexes start: after the inode
// record and its xattrs.
func (n *Node) bodyOffset() uint64 {
	return n.offset + uint64(n.Inode.RecordSize()) + uint64(n.Inode.XattrSize())
}

// Node reads the inode at nid with its inline xattrs.
func (rd *Reader) Node(nid uint64) (*Node, error) {
	if rd.v5 != nil {
		return rd.v5.node(nid)
	}
	if nid > (uint64(rd.size)-rd.metaBase)/InodeSlotSize {
		return nil, corruptf("nid %d beyond the bootstrap", nid)
	}
	off := rd.metaBase + nid*InodeSlotSize
	buf := make([]byte, InodeExtendedSize)
	n, err := rd.r.ReadAt(buf, int64(off))
	if n < InodeCompactSize {
		return nil, fmt.Errorf("reading inode %d: %w", nid, orCorrupt(err))
	}
	ino, err := UnmarshalInode(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", nid, err)
	}
	if ino.Nlink == 0 {
		return nil, corruptf("inode %d has nlink 0", nid)
	}
	node := &Node{Nid: nid, Inode: ino, offset: off}
	if xs := ino.XattrSize(); xs > 0 {
		xoff := off + uint64(ino.RecordSize())
		if !rd.inFile(xoff, uint64(xs)) {
			return nil, corruptf("xattrs of inode %d beyond the bootstrap", nid)
		}
		xb := make([]byte, xs)
		if _, err := rd.r.ReadAt(xb, int64(xoff)); err != nil {
			return nil, fmt.Errorf("reading xattrs of inode %d: %w", nid, err)
		}
		if node.Xattrs, err = UnmarshalXattrs(xb); err != nil {
			return nil, fmt.Errorf("inode %d: %w", nid, err)
		}
	}
	return node, nil
}

func orCorrupt(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return corruptf("short read")
	}
	return err
}

// readData reads the inline or block data of a directory or symlink.
func (rd *Reader) readData(n *Node, maxSize uint64) ([]byte, error) {
	size := n.Inode.Size
	if size > maxSize {
		return nil, corruptf("inode %d data size %d exceeds %d", n.Nid, size, maxSize)
	}
	out := make([]byte, size)
	layout := n.Inode.DataLayout()
	if layout != LayoutFlatPlain && layout != LayoutFlatInline {
		return nil, corruptf("inode %d data layout %d", n.Nid, layout)
	}
	full := size
	if layout == LayoutFlatInline {
		full = size &^ (rd.bs - 1)
	}
	if full > 0 {
		base := uint64(n.Inode.U) * rd.bs
		if !rd.inFile(base, full) {
			return nil, corruptf("inode %d data blocks beyond the bootstrap", n.Nid)
		}
		if _, err := rd.r.ReadAt(out[:full], int64(base)); err != nil {
			return nil, fmt.Errorf("reading data of inode %d: %w", n.Nid, err)
		}
	}
	if tail := size - full; tail > 0 {
		toff := n.bodyOffset()
		if toff/rd.bs != (toff+tail-1)/rd.bs || !rd.inFile(toff, tail) {
			return nil, corruptf("inline data of inode %d crosses a block or the file end", n.Nid)
		}
		if _, err := rd.r.ReadAt(out[full:], int64(toff)); err != nil {
			return nil, fmt.Errorf("reading inline data of inode %d: %w", n.Nid, err)
		}
	}
	return out, nil
}

// DirEntry is one decoded directory entry.
type DirEntry struct {
	Name     string
	Nid      uint64
	FileType uint8
}

// maxDirSize bounds a directory's dirent data; 2^24 entries of 255-byte names
// fit well below it.
const maxDirSize = 1 << 32

// ReadDir returns the entries of directory n, "." and ".." included, in
// on-disk order.
func (rd *Reader) ReadDir(n *Node) ([]DirEntry, error) {
	if !n.IsDir() {
		return nil, fmt.Errorf("inode %d is not a directory", n.Nid)
	}
	if rd.v5 != nil {
		return rd.v5.readDir(n), nil
	}
	if n.Inode.Size > uint64(rd.size) {
		return nil, corruptf("directory %d size %d exceeds the bootstrap", n.Nid, n.Inode.Size)
	}
	data, err := rd.readData(n, maxDirSize)
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	for start := uint64(0); start < uint64(len(data)); start += rd.bs {
		blk := data[start:min(start+rd.bs, uint64(len(data)))]
		ents, err := parseDirentBlock(blk)
		if err != nil {
			return nil, fmt.Errorf("directory %d block %d: %w", n.Nid, start/rd.bs, err)
		}
		out = append(out, ents...)
	}
	return out, nil
}

func parseDirentBlock(blk []byte) ([]DirEntry, error) {
	if len(blk) < DirentSize {
		return nil, corruptf("dirent block of %d bytes", len(blk))
	}
	first := UnmarshalDirent(blk)
	if first.NameOff%DirentSize != 0 || first.NameOff == 0 || int(first.NameOff) > len(blk) {
		return nil, corruptf("first nameoff %d", first.NameOff)
	}
	count := int(first.NameOff) / DirentSize
	ents := make([]DirEntry, 0, count)
	for i := 0; i < count; i++ {
		d := UnmarshalDirent(blk[i*DirentSize:])
		end := len(blk)
		if i+1 < count {
			end = int(le.Uint16(blk[(i+1)*DirentSize+8:]))
		}
		if int(d.NameOff) < count*DirentSize || int(d.NameOff) > end || end > len(blk) {
			return nil, corruptf("dirent %d name at %d..%d", i, d.NameOff, end)
		}
		name := blk[d.NameOff:end]
		if i+1 == count {
			if z := bytes.IndexByte(name, 0); z >= 0 {
				name = name[:z]
			}
		}
		if len(name) == 0 || len(name) > MaxNameLen {
			return nil, corruptf("dirent %d name length %d", i, len(name))
		}
		ents = append(ents, DirEntry{Name: string(name), Nid: d.Nid, FileType: d.FileType})
	}
	return ents, nil
}

// Readlink returns the target of symlink n.
func (rd *Reader) Readlink(n *Node) (string, error) {
	if n.Type() != ModeLnk {
		return "", fmt.Errorf("inode %d is not a symlink", n.Nid)
	}
	if rd.v5 != nil {
		return n.v5.target, nil
	}
	b, err := rd.readData(n, MaxSymlinkLen)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// ChunkCount returns how many chunk indexes regular file n carries: one per
// superblock chunk, whatever the inode's own chunk bits say (§1.9).
func (rd *Reader) ChunkCount(n *Node) uint64 {
	if rd.v5 != nil {
		return uint64(n.v5.ChildCount)
	}
	cs := uint64(rd.ChunkSize)
	return (n.Inode.Size + cs - 1) / cs
}

// Chunks returns the chunk indexes of regular file n.
func (rd *Reader) Chunks(n *Node) ([]ChunkAddr, error) {
	if !n.IsReg() {
		return nil, fmt.Errorf("inode %d is not a regular file", n.Nid)
	}
	if rd.v5 != nil {
		return rd.v5.chunks(n, uint64(rd.ChunkSize))
	}
	if n.Inode.DataLayout() != LayoutChunkBased {
		return nil, corruptf("regular inode %d is not chunk-based", n.Nid)
	}
	if n.Inode.U&^0xffff != 0 || n.Inode.U&chunkFormatIndexes == 0 || n.Inode.U&0x40 != 0 {
		return nil, corruptf("regular inode %d chunk format %#x", n.Nid, n.Inode.U)
	}
	count := rd.ChunkCount(n)
	off := alignUp64(n.bodyOffset(), ChunkAddrSize)
	if count > uint64(rd.size)/ChunkAddrSize || !rd.inFile(off, count*ChunkAddrSize) {
		return nil, corruptf("chunk indexes of inode %d beyond the bootstrap", n.Nid)
	}
	buf := make([]byte, count*ChunkAddrSize)
	if _, err := rd.r.ReadAt(buf, int64(off)); err != nil {
		return nil, fmt.Errorf("reading chunk indexes of inode %d: %w", n.Nid, err)
	}
	out := make([]ChunkAddr, count)
	for i := range out {
		c, err := UnmarshalChunkAddr(buf[i*ChunkAddrSize:])
		if err != nil {
			return nil, fmt.Errorf("inode %d chunk %d: %w", n.Nid, i, err)
		}
		if int(c.BlobIndex) >= len(rd.Blobs) {
			return nil, corruptf("inode %d chunk %d names blob %d of %d", n.Nid, i, c.BlobIndex, len(rd.Blobs))
		}
		out[i] = c
	}
	return out, nil
}

// ChunkTable returns the bootstrap's chunk table (§1.13); for v5, one
// record per chunk the files use, gathered from their chunk records.
func (rd *Reader) ChunkTable() ([]ChunkInfo, error) {
	if rd.v5 != nil {
		return slices.Clone(rd.v5.table), nil
	}
	n := rd.Ext.ChunkTableSize / ChunkTableEntrySize
	buf := make([]byte, rd.Ext.ChunkTableSize)
	if _, err := rd.r.ReadAt(buf, int64(rd.Ext.ChunkTableOffset)); err != nil {
		return nil, fmt.Errorf("reading chunk table: %w", err)
	}
	out := make([]ChunkInfo, n)
	for i := range out {
		out[i] = UnmarshalChunkInfo(buf[i*ChunkTableEntrySize:])
	}
	return out, nil
}

// PrefetchTable returns the nids listed in the prefetch table (§1.6).
func (rd *Reader) PrefetchTable() ([]uint32, error) {
	if rd.v5 != nil {
		return slices.Clone(rd.v5.prefetch), nil
	}
	buf := make([]byte, rd.Ext.PrefetchTableSize)
	if _, err := rd.r.ReadAt(buf, int64(rd.Ext.PrefetchTableOffset)); err != nil {
		return nil, fmt.Errorf("reading prefetch table: %w", err)
	}
	var out []uint32
	for i := 0; i+4 <= len(buf); i += 4 {
		v := le.Uint32(buf[i:])
		if v == 0 {
			break
		}
		out = append(out, v)
	}
	return out, nil
}

// Root returns the root directory.
func (rd *Reader) Root() (*Node, error) {
	nid := uint64(rd.Super.RootNid)
	if rd.v5 != nil {
		nid = V5RootIndex
	}
	n, err := rd.Node(nid)
	if err != nil {
		return nil, err
	}
	if !n.IsDir() {
		return nil, corruptf("root inode %d is not a directory", n.Nid)
	}
	return n, nil
}

// Lookup resolves an absolute path without following symlinks.
func (rd *Reader) Lookup(p string) (*Node, error) {
	n, err := rd.Root()
	if err != nil {
		return nil, err
	}
	for _, name := range strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/") {
		if name == "" {
			continue
		}
		ents, err := rd.ReadDir(n)
		if err != nil {
			return nil, err
		}
		found := false
		for _, e := range ents {
			if e.Name == name {
				if n, err = rd.Node(e.Nid); err != nil {
					return nil, err
				}
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: %w", p, errNotExist)
		}
	}
	return n, nil
}

var errNotExist = errors.New("no such file or directory")

// WalkFunc is called for every path of the tree; hardlinked files are
// reported once per path, with the same nid.
type WalkFunc func(path string, n *Node) error

// Walk visits the tree in breadth-first, name-sorted order (the order the
// builder numbers inodes in), root first with path "/". It fails on a
// directory that appears twice, so a corrupt bootstrap cannot loop forever.
func (rd *Reader) Walk(fn WalkFunc) error {
	root, err := rd.Root()
	if err != nil {
		return err
	}
	if err := fn("/", root); err != nil {
		return err
	}
	type item struct {
		path string
		node *Node
	}
	seen := map[uint64]bool{root.Nid: true}
	queue := []item{{"/", root}}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		ents, err := rd.ReadDir(dir.node)
		if err != nil {
			return fmt.Errorf("reading directory %s: %w", dir.path, err)
		}
		var subdirs []item
		for _, e := range ents {
			if e.Name == "." || e.Name == ".." {
				continue
			}
			if strings.ContainsRune(e.Name, '/') {
				return corruptf("name %q in %s contains '/'", e.Name, dir.path)
			}
			child, err := rd.Node(e.Nid)
			if err != nil {
				return fmt.Errorf("%s: %w", path.Join(dir.path, e.Name), err)
			}
			p := path.Join(dir.path, e.Name)
			if err := fn(p, child); err != nil {
				return err
			}
			if child.IsDir() {
				if seen[child.Nid] {
					return corruptf("directory %s (nid %d) is linked twice", p, child.Nid)
				}
				seen[child.Nid] = true
				subdirs = append(subdirs, item{p, child})
			}
		}
		queue = append(queue, subdirs...)
	}
	return nil
}

// tableRecords returns, per blob, the records of the bootstrap's chunk
// table keyed by chunk index. Chunks no file references (in a merged
// bootstrap, those of whited-out files) are not in the table. The maps are
// built in one pass over the table, on the first call; callers share them
// and must not modify them.
func (rd *Reader) tableRecords() ([]map[uint32]ChunkInfo, error) {
	rd.tableOnce.Do(func() { rd.table, rd.tableErr = rd.readTableRecords() })
	return rd.table, rd.tableErr
}

func (rd *Reader) readTableRecords() ([]map[uint32]ChunkInfo, error) {
	recs, err := rd.ChunkTable()
	if err != nil {
		return nil, err
	}
	out := make([]map[uint32]ChunkInfo, len(rd.Blobs))
	for i := range out {
		out[i] = map[uint32]ChunkInfo{}
	}
	for _, c := range recs {
		b := int(c.BlobIndex)
		if b >= len(rd.Blobs) {
			return nil, corruptf("chunk table names blob %d of %d", b, len(rd.Blobs))
		}
		if c.Index >= rd.Blobs[b].ChunkCount {
			return nil, corruptf("chunk table names chunk %d of blob %d, which has %d", c.Index, b, rd.Blobs[b].ChunkCount)
		}
		if prev, ok := out[b][c.Index]; ok && prev != c {
			return nil, corruptf("chunk table records chunk %d of blob %d twice, differently", c.Index, b)
		}
		out[b][c.Index] = c
	}
	return out, nil
}
