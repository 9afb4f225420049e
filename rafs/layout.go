package rafs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrCorrupt is wrapped by every error that reports malformed on-disk bytes.
var ErrCorrupt = errors.New("rafs: corrupt image")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

var le = binary.LittleEndian

// Sizes and fixed offsets of the bootstrap (§1.1, Appendix A).
const (
	BlockSize     = 4096 // EROFS block size of native (non-tarfs) images
	BlockSizeBits = 12

	SuperBlockOffset    = 1024
	SuperBlockSize      = 128
	ExtSuperBlockOffset = 1152
	ExtSuperBlockSize   = 256
	DeviceSlotOffset    = 1408 // devt_slotoff (11) × 128
	DeviceSlotSize      = 128
	BlobEntrySize       = 256
	InodeExtendedSize   = 64
	InodeCompactSize    = 32
	InodeSlotSize       = 32 // nids count 32-byte slots from meta_blkaddr
	DirentSize          = 12
	ChunkAddrSize       = 8
	ChunkTableEntrySize = 80
	XattrHeaderSize     = 12
	XattrEntryHeadSize  = 4

	RootNid = 128 // the first inode sits one block after meta_blkaddr (§1.1)

	// MaxBlobs is the most data blobs one v6 bootstrap may reference.
	MaxBlobs = 255
	// MaxChunksPerBlob bounds the 24-bit chunk-info index.
	MaxChunksPerBlob = 1 << 24
	// MinChunkSize and MaxChunkSize bound the power-of-two chunk size (§3).
	MinChunkSize = 0x1000
	MaxChunkSize = 0x1000000
	// DefaultChunkSize is the upstream default chunk size.
	DefaultChunkSize = 0x100000

	// MaxNameLen is the longest file name RAFS (and EROFS) can store.
	MaxNameLen = 255
	// MaxSymlinkLen is the longest symlink target nydusd accepts (§1.15).
	MaxSymlinkLen = 4096
)

// EROFS superblock constants (§1.2).
const (
	SuperMagic            = 0xE0F5E1E2
	FeatureCompatRafsV6   = 0x40000000
	FeatureIncompatChunks = 0x4
	FeatureIncompatDevTbl = 0x8
	FeatureIncompatRafsV6 = FeatureIncompatChunks | FeatureIncompatDevTbl
	DevtSlotOff           = 11
)

// SuperFlags are the RafsSuperFlags bits of the extended superblock (§1.3).
type SuperFlags uint64

const (
	FlagCompressionNone    SuperFlags = 0x1
	FlagCompressionLZ4     SuperFlags = 0x2
	FlagHashBlake3         SuperFlags = 0x4
	FlagHashSha256         SuperFlags = 0x8
	FlagExplicitUIDGID     SuperFlags = 0x10
	FlagHasXattr           SuperFlags = 0x20
	FlagCompressionGzip    SuperFlags = 0x40
	FlagCompressionZstd    SuperFlags = 0x80
	FlagInlinedChunkDigest SuperFlags = 0x100
	FlagTarfsMode          SuperFlags = 0x200
	FlagEncryptionNone     SuperFlags = 0x0100_0000
	FlagEncryptionAES      SuperFlags = 0x0200_0000
	flagPreserved          SuperFlags = 0xFC00_0000

	knownSuperFlags = FlagCompressionNone | FlagCompressionLZ4 | FlagHashBlake3 | FlagHashSha256 |
		FlagExplicitUIDGID | FlagHasXattr | FlagCompressionGzip | FlagCompressionZstd |
		FlagInlinedChunkDigest | FlagTarfsMode | FlagEncryptionNone | FlagEncryptionAES | flagPreserved
	compressionFlags = FlagCompressionNone | FlagCompressionLZ4 | FlagCompressionGzip | FlagCompressionZstd
	digestFlags      = FlagHashBlake3 | FlagHashSha256
)

// Inode i_format values (§1.8).
const (
	inodeVersionExtended = 0x1
	LayoutFlatPlain      = 0
	LayoutFlatInline     = 2
	LayoutChunkBased     = 4
)

// Chunk format bits stored in i_u of chunk-based inodes (§1.9).
const (
	chunkFormatBlkbitsMask = 0x1f
	chunkFormatIndexes     = 0x20
)

// Dirent file types (§1.10).
const (
	FTUnknown = 0
	FTReg     = 1
	FTDir     = 2
	FTChr     = 3
	FTBlk     = 4
	FTFifo    = 5
	FTSock    = 6
	FTSymlink = 7
)

// Unix file type bits of i_mode.
const (
	ModeFmt  = 0o170000
	ModeSock = 0o140000
	ModeLnk  = 0o120000
	ModeReg  = 0o100000
	ModeBlk  = 0o060000
	ModeDir  = 0o040000
	ModeChr  = 0o020000
	ModeFifo = 0o010000
)

// FileTypeOfMode maps st_mode to the dirent file type.
func FileTypeOfMode(mode uint32) uint8 {
	switch mode & ModeFmt {
	case ModeReg:
		return FTReg
	case ModeDir:
		return FTDir
	case ModeChr:
		return FTChr
	case ModeBlk:
		return FTBlk
	case ModeFifo:
		return FTFifo
	case ModeSock:
		return FTSock
	case ModeLnk:
		return FTSymlink
	}
	return FTUnknown
}

// SuperBlock is the part of the 128-byte EROFS superblock RAFS uses (§1.2).
// Every other field is written as zero.
type SuperBlock struct {
	Magic           uint32
	Checksum        uint32
	FeatureCompat   uint32
	BlkSzBits       uint8
	ExtSlots        uint8
	RootNid         uint16
	Inos            uint64
	Blocks          uint32
	MetaBlkAddr     uint32
	XattrBlkAddr    uint32
	FeatureIncompat uint32
	U1              uint16
	ExtraDevices    uint16
	DevtSlotOff     uint16
}

// MarshalTo writes the superblock into b[:SuperBlockSize].
func (s *SuperBlock) MarshalTo(b []byte) {
	clear(b[:SuperBlockSize])
	le.PutUint32(b[0:], s.Magic)
	le.PutUint32(b[4:], s.Checksum)
	le.PutUint32(b[8:], s.FeatureCompat)
	b[12] = s.BlkSzBits
	b[13] = s.ExtSlots
	le.PutUint16(b[14:], s.RootNid)
	le.PutUint64(b[16:], s.Inos)
	le.PutUint32(b[36:], s.Blocks)
	le.PutUint32(b[40:], s.MetaBlkAddr)
	le.PutUint32(b[44:], s.XattrBlkAddr)
	le.PutUint32(b[80:], s.FeatureIncompat)
	le.PutUint16(b[84:], s.U1)
	le.PutUint16(b[86:], s.ExtraDevices)
	le.PutUint16(b[88:], s.DevtSlotOff)
}

// UnmarshalSuperBlock decodes b[:SuperBlockSize].
func UnmarshalSuperBlock(b []byte) SuperBlock {
	return SuperBlock{
		Magic:           le.Uint32(b[0:]),
		Checksum:        le.Uint32(b[4:]),
		FeatureCompat:   le.Uint32(b[8:]),
		BlkSzBits:       b[12],
		ExtSlots:        b[13],
		RootNid:         le.Uint16(b[14:]),
		Inos:            le.Uint64(b[16:]),
		Blocks:          le.Uint32(b[36:]),
		MetaBlkAddr:     le.Uint32(b[40:]),
		XattrBlkAddr:    le.Uint32(b[44:]),
		FeatureIncompat: le.Uint32(b[80:]),
		U1:              le.Uint16(b[84:]),
		ExtraDevices:    le.Uint16(b[86:]),
		DevtSlotOff:     le.Uint16(b[88:]),
	}
}

// ExtSuperBlock is the 256-byte RAFS v6 extended superblock at 1152 (§1.3).
type ExtSuperBlock struct {
	Flags               SuperFlags
	BlobTableOffset     uint64
	BlobTableSize       uint32
	ChunkSize           uint32
	ChunkTableOffset    uint64
	ChunkTableSize      uint64
	PrefetchTableOffset uint64
	PrefetchTableSize   uint32
}

// MarshalTo writes the extended superblock into b[:ExtSuperBlockSize].
func (s *ExtSuperBlock) MarshalTo(b []byte) {
	clear(b[:ExtSuperBlockSize])
	le.PutUint64(b[0:], uint64(s.Flags))
	le.PutUint64(b[8:], s.BlobTableOffset)
	le.PutUint32(b[16:], s.BlobTableSize)
	le.PutUint32(b[20:], s.ChunkSize)
	le.PutUint64(b[24:], s.ChunkTableOffset)
	le.PutUint64(b[32:], s.ChunkTableSize)
	le.PutUint64(b[40:], s.PrefetchTableOffset)
	le.PutUint32(b[48:], s.PrefetchTableSize)
}

// UnmarshalExtSuperBlock decodes b[:ExtSuperBlockSize].
func UnmarshalExtSuperBlock(b []byte) ExtSuperBlock {
	return ExtSuperBlock{
		Flags:               SuperFlags(le.Uint64(b[0:])),
		BlobTableOffset:     le.Uint64(b[8:]),
		BlobTableSize:       le.Uint32(b[16:]),
		ChunkSize:           le.Uint32(b[20:]),
		ChunkTableOffset:    le.Uint64(b[24:]),
		ChunkTableSize:      le.Uint64(b[32:]),
		PrefetchTableOffset: le.Uint64(b[40:]),
		PrefetchTableSize:   le.Uint32(b[48:]),
	}
}

// DeviceSlot is an EROFS device-table slot describing one blob (§1.4).
type DeviceSlot struct {
	Tag           string // blob id, at most 64 bytes
	Blocks        uint32 // uncompressed size / block size
	MappedBlkAddr uint32 // block address in a flattened single-device image
}

// MarshalTo writes the slot into b[:DeviceSlotSize].
func (d *DeviceSlot) MarshalTo(b []byte) {
	clear(b[:DeviceSlotSize])
	copy(b[0:64], d.Tag)
	le.PutUint32(b[64:], d.Blocks)
	le.PutUint32(b[68:], d.MappedBlkAddr)
}

// UnmarshalDeviceSlot decodes b[:DeviceSlotSize].
func UnmarshalDeviceSlot(b []byte) DeviceSlot {
	return DeviceSlot{
		Tag:           trimNul(b[0:64]),
		Blocks:        le.Uint32(b[64:]),
		MappedBlkAddr: le.Uint32(b[68:]),
	}
}

func trimNul(b []byte) string {
	return strings.TrimRight(string(b), "\x00")
}

// BlobFeatures are the per-blob feature bits (§2.10).
type BlobFeatures uint32

const (
	BlobAligned              BlobFeatures = 0x1
	BlobInlinedFsMeta        BlobFeatures = 0x2
	BlobChunkInfoV2          BlobFeatures = 0x4
	BlobZran                 BlobFeatures = 0x8
	BlobSeparate             BlobFeatures = 0x10
	BlobInlinedChunkDigest   BlobFeatures = 0x20
	BlobTarfs                BlobFeatures = 0x40
	BlobBatch                BlobFeatures = 0x80
	BlobEncrypted            BlobFeatures = 0x100
	BlobIsChunkdictGenerated BlobFeatures = 0x200
	BlobSeparatedPrefetch    BlobFeatures = 0x400
	BlobExternal             BlobFeatures = 0x800
	BlobHasTarHeader         BlobFeatures = 0x1000_0000
	BlobHasTOC               BlobFeatures = 0x2000_0000
	BlobCapTarTOC            BlobFeatures = 0x4000_0000
	blobV5NoExtBlobTable     BlobFeatures = 0x8000_0000
	blobReservedFeatures     BlobFeatures = 0x0000_F000
)

// BlobEntry is one 256-byte RafsV6Blob record of the blob table (§1.5).
type BlobEntry struct {
	BlobID             string
	BlobIndex          uint32
	ChunkSize          uint32
	ChunkCount         uint32
	Compressor         Compressor
	Digester           Digester
	Features           BlobFeatures
	CompressedSize     uint64
	UncompressedSize   uint64
	TOCSize            uint32
	MetaCompressor     Compressor // compressor of the chunk-info array
	MetaOffset         uint64     // ci_offset
	MetaCompressedSize uint64
	MetaSize           uint64 // ci_uncompressed_size
	TOCDigest          [32]byte
	MetaDigest         [32]byte
	MetaBlobSize       uint64
	CipherIV           uint64
	CipherAlgo         uint32
}

// MarshalTo writes the entry into b[:BlobEntrySize].
func (e *BlobEntry) MarshalTo(b []byte) {
	clear(b[:BlobEntrySize])
	copy(b[0:64], e.BlobID)
	le.PutUint32(b[64:], e.BlobIndex)
	le.PutUint32(b[68:], e.ChunkSize)
	le.PutUint32(b[72:], e.ChunkCount)
	le.PutUint32(b[76:], uint32(e.Compressor))
	le.PutUint32(b[80:], uint32(e.Digester))
	le.PutUint32(b[84:], uint32(e.Features))
	le.PutUint64(b[88:], e.CompressedSize)
	le.PutUint64(b[96:], e.UncompressedSize)
	le.PutUint32(b[104:], e.TOCSize)
	le.PutUint32(b[108:], uint32(e.MetaCompressor))
	le.PutUint64(b[112:], e.MetaOffset)
	le.PutUint64(b[120:], e.MetaCompressedSize)
	le.PutUint64(b[128:], e.MetaSize)
	copy(b[136:168], e.TOCDigest[:])
	copy(b[168:200], e.MetaDigest[:])
	le.PutUint64(b[200:], e.MetaBlobSize)
	le.PutUint64(b[208:], e.CipherIV)
	le.PutUint32(b[216:], e.CipherAlgo)
}

// UnmarshalBlobEntry decodes b[:BlobEntrySize].
func UnmarshalBlobEntry(b []byte) BlobEntry {
	e := BlobEntry{
		BlobID:             trimNul(b[0:64]),
		BlobIndex:          le.Uint32(b[64:]),
		ChunkSize:          le.Uint32(b[68:]),
		ChunkCount:         le.Uint32(b[72:]),
		Compressor:         Compressor(le.Uint32(b[76:])),
		Digester:           Digester(le.Uint32(b[80:])),
		Features:           BlobFeatures(le.Uint32(b[84:])),
		CompressedSize:     le.Uint64(b[88:]),
		UncompressedSize:   le.Uint64(b[96:]),
		TOCSize:            le.Uint32(b[104:]),
		MetaCompressor:     Compressor(le.Uint32(b[108:])),
		MetaOffset:         le.Uint64(b[112:]),
		MetaCompressedSize: le.Uint64(b[120:]),
		MetaSize:           le.Uint64(b[128:]),
		MetaBlobSize:       le.Uint64(b[200:]),
		CipherIV:           le.Uint64(b[208:]),
		CipherAlgo:         le.Uint32(b[216:]),
	}
	copy(e.TOCDigest[:], b[136:168])
	copy(e.MetaDigest[:], b[168:200])
	return e
}

// Inode is a decoded EROFS inode (extended or compact) as RAFS v6 uses it (§1.8).
type Inode struct {
	Format     uint16 // i_format: bit 0 version, bits 1–3 data layout
	XattrCount uint16 // i_xattr_icount
	Mode       uint16
	Size       uint64
	U          uint32 // dir/symlink: data block; regular: chunk format; devices: rdev
	Ino        uint32
	UID, GID   uint32
	Mtime      uint64
	MtimeNsec  uint32
	Nlink      uint32
}

// Extended reports whether the inode uses the 64-byte layout.
func (i *Inode) Extended() bool { return i.Format&inodeVersionExtended != 0 }

// DataLayout returns LayoutFlatPlain, LayoutFlatInline or LayoutChunkBased.
func (i *Inode) DataLayout() int { return int(i.Format>>1) & 0x7 }

// Size of the inode record itself.
func (i *Inode) RecordSize() int {
	if i.Extended() {
		return InodeExtendedSize
	}
	return InodeCompactSize
}

// XattrSize is the size of the inline xattr area that follows the inode.
func (i *Inode) XattrSize() int {
	if i.XattrCount == 0 {
		return 0
	}
	return XattrHeaderSize + (int(i.XattrCount)-1)*4
}

// MarshalExtended writes the inode as a 64-byte extended inode into b.
func (i *Inode) MarshalExtended(b []byte) {
	clear(b[:InodeExtendedSize])
	le.PutUint16(b[0:], i.Format|inodeVersionExtended)
	le.PutUint16(b[2:], i.XattrCount)
	le.PutUint16(b[4:], i.Mode)
	le.PutUint64(b[8:], i.Size)
	le.PutUint32(b[16:], i.U)
	le.PutUint32(b[20:], i.Ino)
	le.PutUint32(b[24:], i.UID)
	le.PutUint32(b[28:], i.GID)
	le.PutUint64(b[32:], i.Mtime)
	le.PutUint32(b[40:], i.MtimeNsec)
	le.PutUint32(b[44:], i.Nlink)
}

// UnmarshalInode decodes an inode from b, which must hold at least the
// compact size, and the extended size when bit 0 of i_format is set.
func UnmarshalInode(b []byte) (Inode, error) {
	if len(b) < InodeCompactSize {
		return Inode{}, corruptf("inode record truncated")
	}
	format := le.Uint16(b[0:])
	if format&^0xf != 0 {
		return Inode{}, corruptf("inode format %#x has unknown bits", format)
	}
	if format&inodeVersionExtended == 0 {
		return Inode{
			Format:     format,
			XattrCount: le.Uint16(b[2:]),
			Mode:       le.Uint16(b[4:]),
			Nlink:      uint32(le.Uint16(b[6:])),
			Size:       uint64(le.Uint32(b[8:])),
			U:          le.Uint32(b[16:]),
			Ino:        le.Uint32(b[20:]),
			UID:        uint32(le.Uint16(b[24:])),
			GID:        uint32(le.Uint16(b[26:])),
		}, nil
	}
	if len(b) < InodeExtendedSize {
		return Inode{}, corruptf("extended inode record truncated")
	}
	return Inode{
		Format:     format,
		XattrCount: le.Uint16(b[2:]),
		Mode:       le.Uint16(b[4:]),
		Size:       le.Uint64(b[8:]),
		U:          le.Uint32(b[16:]),
		Ino:        le.Uint32(b[20:]),
		UID:        le.Uint32(b[24:]),
		GID:        le.Uint32(b[28:]),
		Mtime:      le.Uint64(b[32:]),
		MtimeNsec:  le.Uint32(b[40:]),
		Nlink:      le.Uint32(b[44:]),
	}, nil
}

// Dirent is one 12-byte EROFS directory entry (§1.10).
type Dirent struct {
	Nid      uint64
	NameOff  uint16
	FileType uint8
}

// MarshalTo writes the dirent into b[:DirentSize].
func (d *Dirent) MarshalTo(b []byte) {
	le.PutUint64(b[0:], d.Nid)
	le.PutUint16(b[8:], d.NameOff)
	b[10] = d.FileType
	b[11] = 0
}

// UnmarshalDirent decodes b[:DirentSize].
func UnmarshalDirent(b []byte) Dirent {
	return Dirent{Nid: le.Uint64(b[0:]), NameOff: le.Uint16(b[8:]), FileType: b[10]}
}

// ChunkAddr is the 8-byte chunk index of a chunk-based inode (§1.12).
type ChunkAddr struct {
	BlobIndex uint8  // index into the blob table (stored +1 as the EROFS device id)
	CIIndex   uint32 // 24-bit index into the blob's chunk-info array
	BlkAddr   uint32 // block address in the blob's uncompressed view
}

// MarshalTo writes the chunk index into b[:ChunkAddrSize].
func (c *ChunkAddr) MarshalTo(b []byte) {
	le.PutUint16(b[0:], uint16(c.CIIndex))
	le.PutUint16(b[2:], uint16(c.BlobIndex+1)|uint16(c.CIIndex>>16)<<8)
	le.PutUint32(b[4:], c.BlkAddr)
}

// UnmarshalChunkAddr decodes b[:ChunkAddrSize]. A zero device byte is
// invalid for chunks that carry data.
func UnmarshalChunkAddr(b []byte) (ChunkAddr, error) {
	dev := le.Uint16(b[2:])
	if dev&0xff == 0 {
		return ChunkAddr{}, corruptf("chunk index with device id 0")
	}
	return ChunkAddr{
		BlobIndex: uint8(dev&0xff) - 1,
		CIIndex:   uint32(dev>>8)<<16 | uint32(le.Uint16(b[0:])),
		BlkAddr:   le.Uint32(b[4:]),
	}, nil
}

// Chunk flags of the bootstrap chunk table (§1.13).
const (
	ChunkCompressed uint32 = 0x1
	ChunkHole       uint32 = 0x2
	ChunkEncrypted  uint32 = 0x4
	ChunkBatch      uint32 = 0x8
	ChunkHasCRC32   uint32 = 0x10
)

// ChunkInfo is one 80-byte record of the bootstrap chunk table (§1.13).
type ChunkInfo struct {
	Digest             [32]byte
	BlobIndex          uint32
	Flags              uint32
	CompressedSize     uint32
	UncompressedSize   uint32
	CompressedOffset   uint64
	UncompressedOffset uint64
	FileOffset         uint64
	Index              uint32
	CRC32              uint32
}

// MarshalTo writes the record into b[:ChunkTableEntrySize].
func (c *ChunkInfo) MarshalTo(b []byte) {
	copy(b[0:32], c.Digest[:])
	le.PutUint32(b[32:], c.BlobIndex)
	le.PutUint32(b[36:], c.Flags)
	le.PutUint32(b[40:], c.CompressedSize)
	le.PutUint32(b[44:], c.UncompressedSize)
	le.PutUint64(b[48:], c.CompressedOffset)
	le.PutUint64(b[56:], c.UncompressedOffset)
	le.PutUint64(b[64:], c.FileOffset)
	le.PutUint32(b[72:], c.Index)
	le.PutUint32(b[76:], c.CRC32)
}

// UnmarshalChunkInfo decodes b[:ChunkTableEntrySize].
func UnmarshalChunkInfo(b []byte) ChunkInfo {
	c := ChunkInfo{
		BlobIndex:          le.Uint32(b[32:]),
		Flags:              le.Uint32(b[36:]),
		CompressedSize:     le.Uint32(b[40:]),
		UncompressedSize:   le.Uint32(b[44:]),
		CompressedOffset:   le.Uint64(b[48:]),
		UncompressedOffset: le.Uint64(b[56:]),
		FileOffset:         le.Uint64(b[64:]),
		Index:              le.Uint32(b[72:]),
		CRC32:              le.Uint32(b[76:]),
	}
	copy(c.Digest[:], b[0:32])
	return c
}

// Xattr is one extended attribute, full name and value.
type Xattr struct {
	Name  string
	Value []byte
}

// xattrPrefixes maps EROFS name indexes to their prefixes, in the order
// upstream matches them (§1.11).
var xattrPrefixes = []struct {
	index  uint8
	prefix string
}{
	{1, "user."},
	{2, "system.posix_acl_access"},
	{3, "system.posix_acl_default"},
	{4, "trusted."},
	{6, "security."},
}

func xattrPrefixByIndex(index uint8) (string, bool) {
	for _, p := range xattrPrefixes {
		if p.index == index {
			return p.prefix, true
		}
	}
	return "", false
}

// ErrXattr is wrapped by errors about xattrs RAFS cannot store.
var ErrXattr = errors.New("rafs: unsupported xattr")

// splitXattrName returns the EROFS name index and stored suffix of name.
func splitXattrName(name string) (uint8, string, error) {
	for _, p := range xattrPrefixes {
		if strings.HasPrefix(name, p.prefix) {
			return p.index, name[len(p.prefix):], nil
		}
	}
	return 0, "", fmt.Errorf("%w: %q has no prefix EROFS can store (user., trusted., security., system.posix_acl_*)", ErrXattr, name)
}

// XattrAreaSize returns the size of the inline xattr area for xs, 0 when xs
// is empty. It fails for names or values RAFS cannot store.
func XattrAreaSize(xs []Xattr) (int, error) {
	if len(xs) == 0 {
		return 0, nil
	}
	total := XattrHeaderSize
	for _, x := range xs {
		_, suffix, err := splitXattrName(x.Name)
		if err != nil {
			return 0, err
		}
		if len(suffix) > 255 {
			return 0, fmt.Errorf("%w: name %q longer than 255 bytes", ErrXattr, x.Name)
		}
		if len(x.Value) > 65535 {
			return 0, fmt.Errorf("%w: value of %q longer than 65535 bytes", ErrXattr, x.Name)
		}
		total += alignUp(XattrEntryHeadSize+len(suffix)+len(x.Value), 4)
	}
	if (total-XattrHeaderSize)/4+1 > 0xffff {
		return 0, fmt.Errorf("%w: inline xattr area of %d bytes is too large", ErrXattr, total)
	}
	return total, nil
}

// XattrICount is the i_xattr_icount value for an area of size bytes.
func XattrICount(size int) uint16 {
	if size == 0 {
		return 0
	}
	return uint16((size-XattrHeaderSize)/4 + 1)
}

// MarshalXattrs appends the inline xattr area for xs (in the given order) to
// dst. Callers size-check with XattrAreaSize first.
func MarshalXattrs(dst []byte, xs []Xattr) []byte {
	if len(xs) == 0 {
		return dst
	}
	dst = append(dst, make([]byte, XattrHeaderSize)...)
	for _, x := range xs {
		index, suffix, _ := splitXattrName(x.Name)
		n := XattrEntryHeadSize + len(suffix) + len(x.Value)
		start := len(dst)
		dst = append(dst, make([]byte, alignUp(n, 4))...)
		e := dst[start:]
		e[0] = uint8(len(suffix))
		e[1] = index
		le.PutUint16(e[2:], uint16(len(x.Value)))
		copy(e[4:], suffix)
		copy(e[4+len(suffix):], x.Value)
	}
	return dst
}

// UnmarshalXattrs decodes an inline xattr area (header included).
func UnmarshalXattrs(b []byte) ([]Xattr, error) {
	if len(b) < XattrHeaderSize {
		return nil, corruptf("xattr area of %d bytes", len(b))
	}
	if b[4] != 0 {
		return nil, corruptf("shared xattrs are not supported")
	}
	var xs []Xattr
	p := XattrHeaderSize
	for p < len(b) {
		if len(b)-p < XattrEntryHeadSize {
			return nil, corruptf("xattr entry header truncated")
		}
		nameLen, index, valueLen := int(b[p]), b[p+1], int(le.Uint16(b[p+2:]))
		n := XattrEntryHeadSize + nameLen + valueLen
		if len(b)-p < n {
			return nil, corruptf("xattr entry truncated")
		}
		prefix, ok := xattrPrefixByIndex(index)
		if !ok {
			return nil, corruptf("xattr name index %d unknown", index)
		}
		name := prefix + string(b[p+4:p+4+nameLen])
		value := append([]byte{}, b[p+4+nameLen:p+n]...)
		xs = append(xs, Xattr{Name: name, Value: value})
		p += alignUp(n, 4)
	}
	return xs, nil
}

// EncodeRdev packs a device number the way Linux's new_encode_dev does,
// truncated to the 32 bits EROFS stores (§1.9).
func EncodeRdev(major, minor uint32) uint32 {
	return minor&0xff | (major&0xfff)<<8 | (minor&^0xff)<<12
}

// DecodeRdev is the inverse of EncodeRdev.
func DecodeRdev(rdev uint32) (major, minor uint32) {
	return (rdev >> 8) & 0xfff, rdev&0xff | (rdev>>12)&0xfff00
}

func alignUp(x, a int) int { return (x + a - 1) &^ (a - 1) }

func alignUp64(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// AlignUp rounds x up to a multiple of the power of two a.
func AlignUp(x, a uint64) uint64 { return alignUp64(x, a) }
