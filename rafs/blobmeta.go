package rafs

import (
	"fmt"
	"strconv"
)

// Blob metadata sizes and magics (§2.3, §2.4, §2.8).
const (
	BlobMetaHeaderSize = 4096
	BlobMetaMagic      = 0xB10BB10B
	ChunkInfoV1Size    = 16
	ChunkInfoV2Size    = 24
	TOCEntrySize       = 128
	TarHeaderSize      = 512
	DigestSize         = 32

	// MaxTOCSize bounds a TOC read through blob_toc_size (§2.8).
	MaxTOCSize = 64 << 10
)

// TOC entry names (§2.8).
const (
	TOCImageBlob      = "image.blob"
	TOCBlobMeta       = "blob.meta"
	TOCBlobMetaHeader = "blob.meta.header"
	TOCBlobDigest     = "blob.digest"
	TOCImageBoot      = "image.boot"
	TOCName           = "rafs.blob.toc"
)

const (
	tocFlagNone     = 0x1
	tocFlagZstd     = 0x2
	tocFlagLZ4Block = 0x4
)

// BlobMetaHeader is the 4096-byte compression-context header that follows the
// chunk-info array inside a blob (§2.3).
type BlobMetaHeader struct {
	Features         BlobFeatures
	CICompressor     Compressor
	CIEntries        uint32
	CIOffset         uint64
	CICompressedSize uint64
	CISize           uint64
	ContextOffset    uint64
	ContextSize      uint64
	ContextCount     uint32
}

// Marshal returns the 4096-byte header.
func (h *BlobMetaHeader) Marshal() []byte {
	b := make([]byte, BlobMetaHeaderSize)
	le.PutUint32(b[0:], BlobMetaMagic)
	le.PutUint32(b[4:], uint32(h.Features))
	le.PutUint32(b[8:], uint32(h.CICompressor))
	le.PutUint32(b[12:], h.CIEntries)
	le.PutUint64(b[16:], h.CIOffset)
	le.PutUint64(b[24:], h.CICompressedSize)
	le.PutUint64(b[32:], h.CISize)
	le.PutUint64(b[40:], h.ContextOffset)
	le.PutUint64(b[48:], h.ContextSize)
	le.PutUint32(b[56:], h.ContextCount)
	le.PutUint32(b[4092:], BlobMetaMagic)
	return b
}

// UnmarshalBlobMetaHeader decodes and checks the magics of a header.
func UnmarshalBlobMetaHeader(b []byte) (BlobMetaHeader, error) {
	if len(b) < BlobMetaHeaderSize {
		return BlobMetaHeader{}, corruptf("blob meta header truncated")
	}
	if le.Uint32(b[0:]) != BlobMetaMagic || le.Uint32(b[4092:]) != BlobMetaMagic {
		return BlobMetaHeader{}, corruptf("blob meta header magic %#x/%#x", le.Uint32(b[0:]), le.Uint32(b[4092:]))
	}
	return BlobMetaHeader{
		Features:         BlobFeatures(le.Uint32(b[4:])),
		CICompressor:     Compressor(le.Uint32(b[8:])),
		CIEntries:        le.Uint32(b[12:]),
		CIOffset:         le.Uint64(b[16:]),
		CICompressedSize: le.Uint64(b[24:]),
		CISize:           le.Uint64(b[32:]),
		ContextOffset:    le.Uint64(b[40:]),
		ContextSize:      le.Uint64(b[48:]),
		ContextCount:     le.Uint32(b[56:]),
	}, nil
}

// BlobChunk locates one chunk in a blob: where its (possibly compressed)
// bytes are and where they expand to in the uncompressed view.
type BlobChunk struct {
	CompressedOffset   uint64
	CompressedSize     uint32
	UncompressedOffset uint64
	UncompressedSize   uint32
}

// Compressed reports whether the stored bytes are compressed (v1 records
// imply it by differing sizes).
func (c BlobChunk) Compressed() bool { return c.CompressedSize != c.UncompressedSize }

// AppendChunkInfoV1 appends the 16-byte v1 record of c (§2.4).
func AppendChunkInfoV1(dst []byte, c BlobChunk) []byte {
	us, cs := uint64(c.UncompressedSize-1), uint64(c.CompressedSize-1)
	u := (us>>20&0xf)<<8 | c.UncompressedOffset&0x0fff_ffff_f000 | (us&0xfffff)<<44
	v := c.CompressedOffset&0xff_ffff_ffff | (cs>>20&0xf)<<40 | (cs&0xfffff)<<44
	dst = le.AppendUint64(dst, u)
	return le.AppendUint64(dst, v)
}

// UnmarshalChunkInfoV1 decodes a 16-byte v1 record.
func UnmarshalChunkInfoV1(b []byte) BlobChunk {
	u, v := le.Uint64(b[0:]), le.Uint64(b[8:])
	return BlobChunk{
		UncompressedOffset: u & 0x0fff_ffff_f000,
		UncompressedSize:   uint32((u>>8&0xf)<<20|u>>44) + 1,
		CompressedOffset:   v & 0xff_ffff_ffff,
		CompressedSize:     uint32((v>>40&0xf)<<20|v>>44) + 1,
	}
}

// TOCEntry is one 128-byte table-of-contents record (§2.8).
type TOCEntry struct {
	Flags            uint32
	Name             string
	Digest           [32]byte // sha256 of the uncompressed content
	CompressedOffset uint64
	CompressedSize   uint64
	UncompressedSize uint64
}

// Compressor returns the compression named by the entry's flags.
func (e *TOCEntry) Compressor() (Compressor, error) {
	switch e.Flags & 0x7 {
	case tocFlagNone:
		return CompressNone, nil
	case tocFlagZstd:
		return CompressZstd, nil
	case tocFlagLZ4Block:
		return CompressLZ4Block, nil
	}
	return 0, corruptf("TOC entry %q flags %#x", e.Name, e.Flags)
}

// AppendTOCEntry appends the 128-byte record of e.
func AppendTOCEntry(dst []byte, e TOCEntry) []byte {
	var b [TOCEntrySize]byte
	le.PutUint32(b[0:], e.Flags)
	copy(b[8:24], e.Name)
	copy(b[24:56], e.Digest[:])
	le.PutUint64(b[56:], e.CompressedOffset)
	le.PutUint64(b[64:], e.CompressedSize)
	le.PutUint64(b[72:], e.UncompressedSize)
	return append(dst, b[:]...)
}

// UnmarshalTOCEntry decodes a 128-byte record; reserved bytes are ignored.
func UnmarshalTOCEntry(b []byte) TOCEntry {
	e := TOCEntry{
		Flags:            le.Uint32(b[0:]),
		Name:             trimNul(b[8:24]),
		CompressedOffset: le.Uint64(b[56:]),
		CompressedSize:   le.Uint64(b[64:]),
		UncompressedSize: le.Uint64(b[72:]),
	}
	copy(e.Digest[:], b[24:56])
	return e
}

// TarHeader returns the 512-byte GNU tar header Nydus places after a blob
// section of size bytes (§2.8): mode/uid/gid NUL, mtime zero, typeflag '0'.
func TarHeader(name string, size uint64) []byte {
	b := make([]byte, TarHeaderSize)
	copy(b[0:100], name)
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = '0'
	copy(b[257:265], "ustar  \x00")
	sum := 0
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%07o\x00", sum))
	return b
}

// ParseTarHeader returns the name and size recorded in a Nydus tar header.
func ParseTarHeader(b []byte) (string, uint64, error) {
	if len(b) < TarHeaderSize {
		return "", 0, corruptf("tar header truncated")
	}
	field := trimNul(b[124:136])
	size, err := strconv.ParseUint(field, 8, 64)
	if err != nil {
		return "", 0, corruptf("tar header size %q", field)
	}
	return trimNul(b[0:100]), size, nil
}
