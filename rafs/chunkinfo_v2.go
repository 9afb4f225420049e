package rafs

// ChunkInfoV2 is a 24-byte chunk-info v2 record (§2.5), as zran blobs use
// it: the chunk is ZranOffset bytes into the output of zran context
// ZranIndex of the blob's context table.
type ChunkInfoV2 struct {
	UncompressedOffset uint64 // 4096-aligned
	UncompressedSize   uint32 // 1 … 16 MiB
	Flags              uint8
	CompressedOffset   uint64 // below 2^40
	CompressedSize     uint32 // below 2^24, may be 0
	ZranIndex          uint32
	ZranOffset         uint32
}

// Chunk-info v2 flags (§2.5).
const (
	ChunkV2Compressed = 0x01
	ChunkV2Zran       = 0x02
)

// AppendChunkInfoV2 appends the 24-byte record of c (§2.5).
func AppendChunkInfoV2(dst []byte, c ChunkInfoV2) []byte {
	u := c.UncompressedOffset>>12&0xffff_ffff | uint64(c.UncompressedSize-1)&0xff_ffff<<32 | uint64(c.Flags)<<56
	v := c.CompressedOffset&0xff_ffff_ffff | uint64(c.CompressedSize)&0xff_ffff<<40
	dst = le.AppendUint64(dst, u)
	dst = le.AppendUint64(dst, v)
	return le.AppendUint64(dst, uint64(c.ZranIndex)<<32|uint64(c.ZranOffset))
}

// UnmarshalChunkInfoV2 decodes a 24-byte record.
func UnmarshalChunkInfoV2(b []byte) ChunkInfoV2 {
	u, v, d := le.Uint64(b[0:]), le.Uint64(b[8:]), le.Uint64(b[16:])
	return ChunkInfoV2{
		UncompressedOffset: u & 0xffff_ffff << 12,
		UncompressedSize:   uint32(u>>32&0xff_ffff) + 1,
		Flags:              uint8(u >> 56),
		CompressedOffset:   v & 0xff_ffff_ffff,
		CompressedSize:     uint32(v >> 40),
		ZranIndex:          uint32(d >> 32),
		ZranOffset:         uint32(d),
	}
}
