package rafs

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// v5Reader holds a decoded RAFS v5 bootstrap (§4). Everything is checked
// when it is opened: table bounds, every inode record and what follows it,
// the tree (each record reached exactly once from the root, so no cycles),
// hardlink groups and the chunk records of every file against each other.
// Records may not overlap, so their count is bounded by the file's size.
type v5Reader struct {
	sb       V5SuperBlock
	data     []byte
	recs     []v5Record // recs[i-1] is inode index i
	prefetch []uint32
	table    []ChunkInfo // one record per (blob, chunk index), sorted
	order    []uint32    // inode indexes, breadth-first from the root
}

// v5Record is one inode record with what follows it.
type v5Record struct {
	V5Inode
	index  uint32
	nid    uint64 // the index of the first record of its hardlink group
	parent uint32 // index of the directory listing it; the root's own
	name   string
	target string
	xattrs []Xattr
	chunks uint64 // file offset of the first chunk record
}

func (r *v5Record) typ() uint32 { return r.Mode & ModeFmt }

// maxV5Bootstrap bounds the bootstrap held in memory; inode offsets are
// 32-bit multiples of 8, so no valid v5 bootstrap is larger than 32 GiB.
const maxV5Bootstrap = 1 << 35

func openV5(r io.ReaderAt, size int64) (*Reader, error) {
	if size <= V5SuperBlockSize || size > maxV5Bootstrap {
		return nil, corruptf("RAFS v5 bootstrap of %d bytes", size)
	}
	data := make([]byte, size)
	if n, err := r.ReadAt(data, 0); n != len(data) {
		return nil, fmt.Errorf("reading the v5 bootstrap: %w", orCorrupt(err))
	}
	v := &v5Reader{sb: UnmarshalV5SuperBlock(data), data: data}
	if err := v.load(); err != nil {
		return nil, err
	}
	rd := &Reader{r: r, size: size, bs: BlockSize, ChunkSize: v.sb.BlockSize, v5: v,
		Super: SuperBlock{Inos: v.sb.InodesCount},
		Ext: ExtSuperBlock{Flags: v.sb.Flags, ChunkSize: v.sb.BlockSize,
			ChunkTableSize: uint64(len(v.table)) * ChunkTableEntrySize}}
	var err error
	if rd.Blobs, err = v.blobs(); err != nil {
		return nil, err
	}
	return rd, nil
}

// V5SuperBlock returns the superblock of a v5 bootstrap, or nil for v6.
func (rd *Reader) V5SuperBlock() *V5SuperBlock {
	if rd.v5 == nil {
		return nil
	}
	sb := rd.v5.sb
	return &sb
}

// Version returns the RAFS version of the bootstrap: 5 or 6.
func (rd *Reader) Version() int {
	if rd.v5 != nil {
		return 5
	}
	return 6
}

// tableBytes returns table bytes load checked to lie in the file; nil for an
// empty table, whose offset may point anywhere.
func (v *v5Reader) tableBytes(off, n uint64) []byte {
	if n == 0 {
		return nil
	}
	return v.data[off : off+n]
}

// span returns data[off:off+n] or an error naming what.
func (v *v5Reader) span(off, n uint64, what string) ([]byte, error) {
	size := uint64(len(v.data))
	if off > size || n > size-off {
		return nil, corruptf("%s at %d+%d beyond the %d-byte bootstrap", what, off, n, size)
	}
	return v.data[off : off+n], nil
}

func (v *v5Reader) load() error {
	sb := &v.sb
	switch {
	case sb.Magic != V5Magic || sb.Version != V5Version:
		return corruptf("RAFS v5 magic with version %#x (want %#x)", sb.Version, V5Version)
	case sb.SBSize != V5SuperBlockSize:
		return corruptf("v5 superblock size %d", sb.SBSize)
	case CheckChunkSize(sb.BlockSize) != nil:
		return corruptf("v5 chunk size %#x", sb.BlockSize)
	case sb.Flags&^knownSuperFlags != 0:
		return corruptf("unknown superblock flags %#x", uint64(sb.Flags&^knownSuperFlags))
	case sb.InodeTableEntries == 0 || sb.InodesCount == 0 || sb.InodesCount > uint64(sb.InodeTableEntries):
		return corruptf("%d inodes in %d inode table entries", sb.InodesCount, sb.InodeTableEntries)
	}
	if _, err := SuperCompressor(sb.Flags); err != nil {
		return err
	}
	if _, err := SuperDigester(sb.Flags); err != nil {
		return err
	}
	tables := []struct {
		off, size uint64
		what      string
	}{
		{sb.InodeTableOffset, uint64(sb.InodeTableEntries) * 4, "inode table"},
		{sb.PrefetchTableOffset, uint64(sb.PrefetchTableEntries) * 4, "prefetch table"},
		{sb.BlobTableOffset, uint64(sb.BlobTableSize), "blob table"},
		{sb.ExtBlobTableOffset, uint64(sb.ExtBlobTableEntries) * V5ExtBlobEntrySize, "extended blob table"},
	}
	var metaStart uint64 = V5SuperBlockSize
	for i, t := range tables {
		if t.size == 0 {
			continue
		}
		if t.off < V5SuperBlockSize {
			return corruptf("%s at %d overlaps the superblock", t.what, t.off)
		}
		if _, err := v.span(t.off, t.size, t.what); err != nil {
			return err
		}
		for _, u := range tables[:i] {
			if u.size > 0 && t.off < u.off+u.size && u.off < t.off+t.size {
				return corruptf("%s overlaps the %s", t.what, u.what)
			}
		}
		metaStart = max(metaStart, t.off+t.size)
	}
	if err := v.loadRecords(metaStart); err != nil {
		return err
	}
	if err := v.loadTree(); err != nil {
		return err
	}
	if err := v.loadPrefetch(); err != nil {
		return err
	}
	return v.loadTable()
}

// loadRecords decodes every inode record the inode table points at. Records
// lie after the tables and may not overlap one another.
func (v *v5Reader) loadRecords(metaStart uint64) error {
	n := v.sb.InodeTableEntries
	it := v.tableBytes(v.sb.InodeTableOffset, uint64(n)*4)
	v.recs = make([]v5Record, n)
	type extent struct{ start, end uint64 }
	exts := make([]extent, n)
	for i := range v.recs {
		off := uint64(le.Uint32(it[i*4:])) << 3
		if off < metaStart {
			return corruptf("inode %d at %d, inside the tables", i+1, off)
		}
		r := &v.recs[i]
		r.index = uint32(i + 1)
		end, err := v.decodeRecord(r, off)
		if err != nil {
			return fmt.Errorf("inode %d: %w", i+1, err)
		}
		exts[i] = extent{off, end}
	}
	slices.SortFunc(exts, func(a, b extent) int { return cmp.Compare(a.start, b.start) })
	for i := 1; i < len(exts); i++ {
		if exts[i].start < exts[i-1].end {
			return corruptf("inode records at %d and %d overlap", exts[i-1].start, exts[i].start)
		}
	}
	return nil
}

// decodeRecord decodes the record at off and returns where it ends.
func (v *v5Reader) decodeRecord(r *v5Record, off uint64) (uint64, error) {
	b, err := v.span(off, V5InodeSize, "inode record")
	if err != nil {
		return 0, err
	}
	r.V5Inode = UnmarshalV5Inode(b)
	t := r.typ()
	switch {
	case r.Mode > 0xffff || FileTypeOfMode(r.Mode) == FTUnknown:
		return 0, corruptf("mode %#o", r.Mode)
	case r.Ino == 0 || r.Ino > 0xffffffff:
		return 0, corruptf("inode number %d", r.Ino)
	case r.Nlink == 0:
		return 0, corruptf("nlink 0")
	case r.Flags&^v5KnownInode != 0:
		return 0, corruptf("inode flags %#x", uint64(r.Flags))
	case (t == ModeLnk) != (r.SymlinkSize > 0) || (t == ModeLnk) != (r.Flags&V5InodeSymlink != 0):
		return 0, corruptf("symlink size %d and flags %#x for mode %#o", r.SymlinkSize, uint64(r.Flags), r.Mode)
	case r.SymlinkSize > MaxSymlinkLen:
		return 0, corruptf("symlink target of %d bytes", r.SymlinkSize)
	case r.NameSize == 0 || r.NameSize > MaxNameLen:
		return 0, corruptf("name of %d bytes", r.NameSize)
	case t != ModeReg && t != ModeDir && r.ChildCount != 0:
		return 0, corruptf("%d children or chunks for mode %#o", r.ChildCount, r.Mode)
	}
	pos := off + V5InodeSize
	name, err := v.span(pos, uint64(r.NameSize), "name")
	if err != nil {
		return 0, err
	}
	r.name = string(name)
	pos += V5Align8(uint64(r.NameSize))
	if r.SymlinkSize > 0 {
		target, err := v.span(pos, uint64(r.SymlinkSize), "symlink target")
		if err != nil {
			return 0, err
		}
		r.target = string(target)
		pos += V5Align8(uint64(r.SymlinkSize))
	}
	if r.Flags&V5InodeXattr != 0 {
		if pos, err = v.decodeXattrs(r, pos); err != nil {
			return 0, err
		}
	}
	if t == ModeReg {
		r.chunks = pos
		if _, err := v.span(pos, uint64(r.ChildCount)*ChunkTableEntrySize, "chunk records"); err != nil {
			return 0, err
		}
		pos += uint64(r.ChildCount) * ChunkTableEntrySize
	}
	if pos > uint64(len(v.data)) {
		return 0, corruptf("record ends at %d beyond the bootstrap", pos)
	}
	return pos, nil
}

func (v *v5Reader) decodeXattrs(r *v5Record, pos uint64) (uint64, error) {
	head, err := v.span(pos, 8, "xattr size")
	if err != nil {
		return 0, err
	}
	size := le.Uint64(head)
	body, err := v.span(pos+8, size, "xattrs")
	if err != nil {
		return 0, err
	}
	for len(body) > 0 {
		if len(body) < 4 {
			return 0, corruptf("truncated xattr pair")
		}
		n := uint64(le.Uint32(body))
		if n > uint64(len(body)-4) {
			return 0, corruptf("xattr pair of %d bytes in %d", n, len(body)-4)
		}
		pair := body[4 : 4+n]
		body = body[4+n:]
		z := slices.Index(pair, 0)
		if z < 0 {
			return 0, corruptf("xattr pair without a name")
		}
		name := string(pair[:z])
		if _, _, err := splitXattrName(name); err != nil {
			return 0, corruptf("%v", err)
		}
		x := Xattr{Name: name}
		if z+1 < len(pair) {
			x.Value = slices.Clone(pair[z+1:])
		}
		r.xattrs = append(r.xattrs, x)
	}
	slices.SortFunc(r.xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(r.xattrs); i++ {
		if r.xattrs[i].Name == r.xattrs[i-1].Name {
			return 0, corruptf("xattr %q repeated", r.xattrs[i].Name)
		}
	}
	if V5Align8(size) < size {
		return 0, corruptf("xattr size %d", size)
	}
	return pos + 8 + V5Align8(size), nil
}

// loadTree checks that the directories form a tree rooted at index 1 that
// reaches every record once, and resolves hardlink groups.
func (v *v5Reader) loadTree() error {
	root := &v.recs[V5RootIndex-1]
	if root.typ() != ModeDir {
		return corruptf("root inode is not a directory (mode %#o)", root.Mode)
	}
	n := uint32(len(v.recs))
	reached := make([]bool, n+1)
	reached[V5RootIndex] = true
	root.parent = V5RootIndex
	v.order = append(make([]uint32, 0, n), V5RootIndex)
	for next := 0; next < len(v.order); next++ {
		d := &v.recs[v.order[next]-1]
		if d.typ() != ModeDir || d.ChildCount == 0 {
			continue
		}
		first := uint64(d.ChildIndex)
		last := first + uint64(d.ChildCount) - 1
		if first <= V5RootIndex || last > uint64(n) {
			return corruptf("directory %q (inode %d) lists inodes %d..%d of %d", d.name, d.index, first, last, n)
		}
		names := make(map[string]bool, d.ChildCount)
		for c := uint32(first); c <= uint32(last); c++ {
			if reached[c] {
				return corruptf("inode %d is listed twice (a cycle or a shared entry)", c)
			}
			reached[c] = true
			child := &v.recs[c-1]
			if err := checkV5Name(child.name); err != nil {
				return fmt.Errorf("inode %d in directory %q: %w", c, d.name, err)
			}
			if names[child.name] {
				return corruptf("name %q twice in directory %q", child.name, d.name)
			}
			names[child.name] = true
			if child.Parent != d.Ino {
				return corruptf("inode %d names parent %d, but directory inode %d lists it", c, child.Parent, d.Ino)
			}
			child.parent = d.index
			v.order = append(v.order, c)
		}
	}
	for i, ok := range reached[1:] {
		if !ok {
			return corruptf("inode %d is in no directory", i+1)
		}
	}
	byIno := make(map[uint64]*v5Record, len(v.recs))
	for i := range v.recs {
		r := &v.recs[i]
		r.nid = uint64(r.index)
		first, ok := byIno[r.Ino]
		if !ok {
			byIno[r.Ino] = r
			continue
		}
		if r.typ() == ModeDir || first.typ() == ModeDir {
			return corruptf("directory inode number %d shared by inodes %d and %d", r.Ino, first.index, r.index)
		}
		if r.Mode != first.Mode || r.Size != first.Size || r.target != first.target || r.ChildCount != first.ChildCount {
			return corruptf("hardlinked inodes %d and %d (number %d) differ", first.index, r.index, r.Ino)
		}
		r.nid = first.nid
	}
	return nil
}

func checkV5Name(name string) error {
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return corruptf("file name %q", name)
	}
	return nil
}

func (v *v5Reader) loadPrefetch() error {
	b := v.tableBytes(v.sb.PrefetchTableOffset, uint64(v.sb.PrefetchTableEntries)*4)
	for i := 0; i < len(b); i += 4 {
		x := le.Uint32(b[i:])
		if x == 0 || x > uint32(len(v.recs)) {
			return corruptf("prefetch table names inode %d of %d", x, len(v.recs))
		}
		v.prefetch = append(v.prefetch, uint32(v.recs[x-1].nid))
	}
	return nil
}

// chunkRecord decodes chunk record k of regular record r.
func (v *v5Reader) chunkRecord(r *v5Record, k uint32) ChunkInfo {
	return UnmarshalChunkInfo(v.data[r.chunks+uint64(k)*ChunkTableEntrySize:])
}

// loadTable gathers the chunk records of every file into one record per
// (blob, chunk index), which must agree wherever the chunk is used.
func (v *v5Reader) loadTable() error {
	// Sort small keys, not 80-byte records: where each record lies, by
	// (blob, chunk index).
	type ref struct {
		blob, index uint32
		off         uint64
	}
	var refs []ref
	for i := range v.recs {
		r := &v.recs[i]
		if r.typ() != ModeReg || r.nid != uint64(r.index) {
			continue
		}
		for k := uint64(0); k < uint64(r.ChildCount); k++ {
			off := r.chunks + k*ChunkTableEntrySize
			refs = append(refs, ref{le.Uint32(v.data[off+32:]), le.Uint32(v.data[off+72:]), off})
		}
	}
	slices.SortFunc(refs, func(a, b ref) int {
		return cmp.Or(cmp.Compare(a.blob, b.blob), cmp.Compare(a.index, b.index), cmp.Compare(a.off, b.off))
	})
	for i, x := range refs {
		c := UnmarshalChunkInfo(v.data[x.off:])
		c.FileOffset = 0
		if i > 0 && refs[i-1].blob == x.blob && refs[i-1].index == x.index {
			if c != v.table[len(v.table)-1] {
				return corruptf("two records of blob %d chunk %d disagree (at %d and %d)", x.blob, x.index, refs[i-1].off, x.off)
			}
			continue
		}
		v.table = append(v.table, c)
	}
	return nil
}

// blobs decodes the blob table and the extended blob table into blob
// entries, and checks every chunk record against the blob it names.
func (v *v5Reader) blobs() ([]BlobEntry, error) {
	sb := &v.sb
	comp, _ := SuperCompressor(sb.Flags)
	dig, _ := SuperDigester(sb.Flags)
	buf := v.tableBytes(sb.BlobTableOffset, uint64(sb.BlobTableSize))
	var out []BlobEntry
	for len(buf) > 8 {
		id := buf[8:]
		if z := slices.Index(id, 0); z >= 0 {
			id = id[:z]
		}
		buf = buf[min(len(buf), 8+len(id)+1):]
		if !isBlobID(string(id)) {
			return nil, corruptf("v5 blob %d id %q is not a sha256 hex digest", len(out), id)
		}
		if len(out) == MaxBlobs {
			return nil, corruptf("more than %d blobs", MaxBlobs)
		}
		out = append(out, BlobEntry{BlobID: string(id), BlobIndex: uint32(len(out)),
			ChunkSize: sb.BlockSize, Compressor: comp, Digester: dig})
	}
	if len(slices.DeleteFunc(slices.Clone(buf), func(b byte) bool { return b == 0 })) > 0 {
		return nil, corruptf("junk after the v5 blob table")
	}
	if sb.ExtBlobTableEntries != 0 && int(sb.ExtBlobTableEntries) != len(out) {
		return nil, corruptf("%d extended blob entries for %d blobs", sb.ExtBlobTableEntries, len(out))
	}
	ext := v.tableBytes(sb.ExtBlobTableOffset, uint64(sb.ExtBlobTableEntries)*V5ExtBlobEntrySize)
	for i := range out {
		e := &out[i]
		if sb.ExtBlobTableEntries == 0 {
			continue
		}
		x := UnmarshalV5ExtBlobEntry(ext[i*V5ExtBlobEntrySize:])
		if x.ChunkCount > MaxChunksPerBlob || x.CompressedSize > 1<<40 || x.UncompressedSize > 1<<44 {
			return nil, corruptf("v5 blob %d: %d chunks, sizes %d/%d", i, x.ChunkCount, x.CompressedSize, x.UncompressedSize)
		}
		e.ChunkCount, e.Features = x.ChunkCount, x.Features
		e.CompressedSize, e.UncompressedSize = x.CompressedSize, x.UncompressedSize
	}
	for _, c := range v.table {
		if int(c.BlobIndex) >= len(out) {
			return nil, corruptf("a chunk record names blob %d of %d", c.BlobIndex, len(out))
		}
		e := &out[c.BlobIndex]
		uEnd, cEnd := c.UncompressedOffset+uint64(c.UncompressedSize), c.CompressedOffset+uint64(c.CompressedSize)
		if sb.ExtBlobTableEntries == 0 {
			// Without the extended table, the chunks say how large the blob is.
			if c.Index >= MaxChunksPerBlob {
				return nil, corruptf("blob %d chunk index %d", c.BlobIndex, c.Index)
			}
			e.ChunkCount = max(e.ChunkCount, c.Index+1)
			e.UncompressedSize, e.CompressedSize = max(e.UncompressedSize, uEnd), max(e.CompressedSize, cEnd)
		}
		switch {
		case c.Index >= e.ChunkCount:
			return nil, corruptf("blob %d chunk index %d of %d", c.BlobIndex, c.Index, e.ChunkCount)
		case c.UncompressedSize == 0 || c.UncompressedSize > sb.BlockSize || c.CompressedSize == 0:
			return nil, corruptf("blob %d chunk %d sizes %d/%d", c.BlobIndex, c.Index, c.CompressedSize, c.UncompressedSize)
		case uEnd < c.UncompressedOffset || uEnd > e.UncompressedSize || cEnd < c.CompressedOffset || cEnd > e.CompressedSize:
			return nil, corruptf("blob %d chunk %d lies beyond the blob's sizes", c.BlobIndex, c.Index)
		case c.Flags&ChunkCompressed != 0 && e.Compressor == CompressNone:
			return nil, corruptf("blob %d chunk %d is compressed in an uncompressed image", c.BlobIndex, c.Index)
		case c.Flags&ChunkCompressed == 0 && c.CompressedSize != c.UncompressedSize:
			return nil, corruptf("blob %d chunk %d is stored raw in %d bytes for %d", c.BlobIndex, c.Index, c.CompressedSize, c.UncompressedSize)
		}
	}
	return out, nil
}

func isBlobID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// node returns the node of inode index nid.
func (v *v5Reader) node(nid uint64) (*Node, error) {
	if nid == 0 || nid > uint64(len(v.recs)) {
		return nil, corruptf("inode %d of %d", nid, len(v.recs))
	}
	r := &v.recs[v.recs[nid-1].nid-1]
	ino := Inode{Mode: uint16(r.Mode), Size: r.Size, Ino: uint32(r.Ino), UID: r.UID, GID: r.GID,
		Mtime: r.Mtime, MtimeNsec: r.MtimeNsec, Nlink: r.Nlink}
	if t := r.typ(); t == ModeChr || t == ModeBlk {
		ino.U = r.Rdev
	}
	return &Node{Nid: r.nid, Inode: ino, Xattrs: r.xattrs, v5: r}, nil
}

func (v *v5Reader) readDir(n *Node) []DirEntry {
	r := n.v5
	out := []DirEntry{{Name: ".", Nid: r.nid, FileType: FTDir}, {Name: "..", Nid: uint64(r.parent), FileType: FTDir}}
	for c := r.ChildIndex; c < r.ChildIndex+r.ChildCount; c++ {
		child := &v.recs[c-1]
		out = append(out, DirEntry{Name: child.name, Nid: child.nid, FileType: FileTypeOfMode(child.Mode)})
	}
	return out
}

// chunks returns the chunk addresses of regular file n after checking that
// its records cover the file chunk by chunk.
func (v *v5Reader) chunks(n *Node, cs uint64) ([]ChunkAddr, error) {
	r := n.v5
	want := (r.Size + cs - 1) / cs
	if r.Flags&V5InodeHasHole != 0 && uint64(r.ChildCount) != want {
		return nil, fmt.Errorf("inode %d: v5 files with holes (chunks not covering the file) are not supported", r.index)
	}
	if uint64(r.ChildCount) != want {
		return nil, corruptf("inode %d of %d bytes has %d chunk records, want %d", r.index, r.Size, r.ChildCount, want)
	}
	out := make([]ChunkAddr, r.ChildCount)
	for k := range out {
		c := v.chunkRecord(r, uint32(k))
		off := uint64(k) * cs
		if c.FileOffset != off || uint64(c.UncompressedSize) != min(cs, r.Size-off) {
			return nil, corruptf("inode %d chunk %d at file offset %d holds %d bytes, want %d at %d",
				r.index, k, c.FileOffset, c.UncompressedSize, min(cs, r.Size-off), off)
		}
		out[k] = ChunkAddr{BlobIndex: uint8(c.BlobIndex), CIIndex: c.Index}
	}
	return out, nil
}

// v5ChunkSource gives a blob's chunk locations from the bootstrap's own
// chunk records: v5 blobs carry no chunk-info array of their own.
type v5ChunkSource struct {
	n    int
	recs map[uint32]ChunkInfo
}

func (s v5ChunkSource) Len() int { return s.n }

func (s v5ChunkSource) Chunk(i uint32) ChunkLocation {
	c := s.recs[i]
	return ChunkLocation{CompressedOffset: c.CompressedOffset, CompressedSize: c.CompressedSize,
		UncompressedOffset: c.UncompressedOffset, UncompressedSize: c.UncompressedSize,
		Compressed: c.Flags&ChunkCompressed != 0}
}

// v5Loader is the ChunkInfoLoader of v5 images: it reads nothing from the
// blob.
func (rd *Reader) v5Loader(_ io.ReaderAt, _ int64, e BlobEntry) (ChunkInfoSource, error) {
	table, err := rd.tableRecords()
	if err != nil {
		return nil, err
	}
	return v5ChunkSource{n: int(e.ChunkCount), recs: table[e.BlobIndex]}, nil
}
