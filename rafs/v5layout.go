package rafs

// RAFS v5 structures and their encodings (docs/rafs-format.md §4).

// Sizes and constants of the v5 bootstrap (§4).
const (
	V5Magic            = 0x52414653
	V5Version          = 0x500
	V5SuperBlockSize   = 8192
	V5InodeSize        = 128
	V5ExtBlobEntrySize = 64
	V5Align            = 8
	// V5RootIndex is the inode index of the root directory.
	V5RootIndex = 1
)

// V5InodeFlags are the flags of a v5 inode record (§4).
type V5InodeFlags uint64

const (
	V5InodeSymlink  V5InodeFlags = 0x1
	V5InodeHardlink V5InodeFlags = 0x2
	V5InodeXattr    V5InodeFlags = 0x4
	V5InodeHasHole  V5InodeFlags = 0x8
	v5KnownInode                 = V5InodeSymlink | V5InodeHardlink | V5InodeXattr | V5InodeHasHole
)

// V5SuperBlock is the first 80 bytes of a v5 bootstrap; the rest of its
// 8192 bytes are zero.
type V5SuperBlock struct {
	Magic, Version, SBSize uint32
	// BlockSize is the chunk size.
	BlockSize            uint32
	Flags                SuperFlags
	InodesCount          uint64 // distinct inodes (hardlinks counted once)
	InodeTableOffset     uint64
	PrefetchTableOffset  uint64
	BlobTableOffset      uint64
	InodeTableEntries    uint32 // tree entries (records)
	PrefetchTableEntries uint32
	BlobTableSize        uint32 // bytes
	ExtBlobTableEntries  uint32
	ExtBlobTableOffset   uint64
}

// MarshalTo writes the superblock into b[:V5SuperBlockSize], zeroing the
// reserved bytes.
func (s *V5SuperBlock) MarshalTo(b []byte) {
	clear(b[:V5SuperBlockSize])
	le.PutUint32(b[0:], s.Magic)
	le.PutUint32(b[4:], s.Version)
	le.PutUint32(b[8:], s.SBSize)
	le.PutUint32(b[12:], s.BlockSize)
	le.PutUint64(b[16:], uint64(s.Flags))
	le.PutUint64(b[24:], s.InodesCount)
	le.PutUint64(b[32:], s.InodeTableOffset)
	le.PutUint64(b[40:], s.PrefetchTableOffset)
	le.PutUint64(b[48:], s.BlobTableOffset)
	le.PutUint32(b[56:], s.InodeTableEntries)
	le.PutUint32(b[60:], s.PrefetchTableEntries)
	le.PutUint32(b[64:], s.BlobTableSize)
	le.PutUint32(b[68:], s.ExtBlobTableEntries)
	le.PutUint64(b[72:], s.ExtBlobTableOffset)
}

// UnmarshalV5SuperBlock decodes b[:80].
func UnmarshalV5SuperBlock(b []byte) V5SuperBlock {
	return V5SuperBlock{
		Magic: le.Uint32(b[0:]), Version: le.Uint32(b[4:]), SBSize: le.Uint32(b[8:]),
		BlockSize: le.Uint32(b[12:]), Flags: SuperFlags(le.Uint64(b[16:])),
		InodesCount: le.Uint64(b[24:]), InodeTableOffset: le.Uint64(b[32:]),
		PrefetchTableOffset: le.Uint64(b[40:]), BlobTableOffset: le.Uint64(b[48:]),
		InodeTableEntries: le.Uint32(b[56:]), PrefetchTableEntries: le.Uint32(b[60:]),
		BlobTableSize: le.Uint32(b[64:]), ExtBlobTableEntries: le.Uint32(b[68:]),
		ExtBlobTableOffset: le.Uint64(b[72:]),
	}
}

// V5ExtBlobEntry is one entry of the extended blob table.
type V5ExtBlobEntry struct {
	ChunkCount       uint32
	Features         BlobFeatures
	UncompressedSize uint64
	CompressedSize   uint64
}

// MarshalTo writes the entry into b[:V5ExtBlobEntrySize].
func (e *V5ExtBlobEntry) MarshalTo(b []byte) {
	clear(b[:V5ExtBlobEntrySize])
	le.PutUint32(b[0:], e.ChunkCount)
	le.PutUint32(b[4:], uint32(e.Features))
	le.PutUint64(b[8:], e.UncompressedSize)
	le.PutUint64(b[16:], e.CompressedSize)
}

// UnmarshalV5ExtBlobEntry decodes b[:24].
func UnmarshalV5ExtBlobEntry(b []byte) V5ExtBlobEntry {
	return V5ExtBlobEntry{ChunkCount: le.Uint32(b[0:]), Features: BlobFeatures(le.Uint32(b[4:])),
		UncompressedSize: le.Uint64(b[8:]), CompressedSize: le.Uint64(b[16:])}
}

// V5Inode is the fixed 128-byte part of a v5 inode record; the name, the
// symlink target, xattrs and chunk records follow it.
type V5Inode struct {
	Digest      [32]byte
	Parent      uint64 // the parent directory's inode number
	Ino         uint64
	UID, GID    uint32
	ProjID      uint32
	Mode        uint32
	Size        uint64
	Blocks      uint64
	Flags       V5InodeFlags
	Nlink       uint32
	ChildIndex  uint32 // directories: inode index of the first child
	ChildCount  uint32 // directories: children; regular files: chunk records
	NameSize    uint16
	SymlinkSize uint16
	Rdev        uint32
	MtimeNsec   uint32
	Mtime       uint64
}

// MarshalTo writes the record into b[:V5InodeSize].
func (i *V5Inode) MarshalTo(b []byte) {
	clear(b[:V5InodeSize])
	copy(b[0:32], i.Digest[:])
	le.PutUint64(b[32:], i.Parent)
	le.PutUint64(b[40:], i.Ino)
	le.PutUint32(b[48:], i.UID)
	le.PutUint32(b[52:], i.GID)
	le.PutUint32(b[56:], i.ProjID)
	le.PutUint32(b[60:], i.Mode)
	le.PutUint64(b[64:], i.Size)
	le.PutUint64(b[72:], i.Blocks)
	le.PutUint64(b[80:], uint64(i.Flags))
	le.PutUint32(b[88:], i.Nlink)
	le.PutUint32(b[92:], i.ChildIndex)
	le.PutUint32(b[96:], i.ChildCount)
	le.PutUint16(b[100:], i.NameSize)
	le.PutUint16(b[102:], i.SymlinkSize)
	le.PutUint32(b[104:], i.Rdev)
	le.PutUint32(b[108:], i.MtimeNsec)
	le.PutUint64(b[112:], i.Mtime)
}

// UnmarshalV5Inode decodes b[:V5InodeSize].
func UnmarshalV5Inode(b []byte) V5Inode {
	var i V5Inode
	copy(i.Digest[:], b[0:32])
	i.Parent, i.Ino = le.Uint64(b[32:]), le.Uint64(b[40:])
	i.UID, i.GID, i.ProjID, i.Mode = le.Uint32(b[48:]), le.Uint32(b[52:]), le.Uint32(b[56:]), le.Uint32(b[60:])
	i.Size, i.Blocks, i.Flags = le.Uint64(b[64:]), le.Uint64(b[72:]), V5InodeFlags(le.Uint64(b[80:]))
	i.Nlink, i.ChildIndex, i.ChildCount = le.Uint32(b[88:]), le.Uint32(b[92:]), le.Uint32(b[96:])
	i.NameSize, i.SymlinkSize = le.Uint16(b[100:]), le.Uint16(b[102:])
	i.Rdev, i.MtimeNsec, i.Mtime = le.Uint32(b[104:]), le.Uint32(b[108:]), le.Uint64(b[112:])
	return i
}

// V5Align8 rounds n up to the 8-byte alignment of every v5 item.
func V5Align8(n uint64) uint64 { return (n + V5Align - 1) &^ (V5Align - 1) }

// V5XattrSize returns the unpadded size of the xattr pairs xs as v5 stores
// them (each: u32 length, name, NUL, value), which the u64 before them
// records.
func V5XattrSize(xs []Xattr) uint64 {
	var n uint64
	for _, x := range xs {
		n += 4 + uint64(len(x.Name)) + 1 + uint64(len(x.Value))
	}
	return n
}

// AppendV5Xattrs appends the xattr block of xs (u64 size, pairs, padding to
// 8 bytes) to dst; nothing when xs is empty.
func AppendV5Xattrs(dst []byte, xs []Xattr) []byte {
	if len(xs) == 0 {
		return dst
	}
	size := V5XattrSize(xs)
	dst = le.AppendUint64(dst, size)
	for _, x := range xs {
		dst = le.AppendUint32(dst, uint32(len(x.Name)+1+len(x.Value)))
		dst = append(append(append(dst, x.Name...), 0), x.Value...)
	}
	return append(dst, make([]byte, V5Align8(size)-size)...)
}

// SuperCompressor returns the compressor the superblock flags name (v5
// keeps it there; §4).
func SuperCompressor(f SuperFlags) (Compressor, error) {
	switch f & compressionFlags {
	case FlagCompressionNone:
		return CompressNone, nil
	case FlagCompressionLZ4:
		return CompressLZ4Block, nil
	case FlagCompressionGzip:
		return CompressGzip, nil
	case FlagCompressionZstd:
		return CompressZstd, nil
	}
	return 0, corruptf("superblock flags %#x name no single compressor", uint64(f))
}

// SuperDigester returns the digester the superblock flags name; images
// older than the digest bits name none and mean blake3 (§4).
func SuperDigester(f SuperFlags) (Digester, error) {
	switch f & digestFlags {
	case 0, FlagHashBlake3:
		return DigestBlake3, nil
	case FlagHashSha256:
		return DigestSha256, nil
	}
	return 0, corruptf("superblock flags %#x name two digesters", uint64(f))
}
