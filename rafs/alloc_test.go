package rafs

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// allocated returns the bytes f allocated on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocBound is what decoding in bytes of input, yielding out bytes of
// decoded output, may allocate: a few copies of each, plus a fixed
// allowance for decoder state. A count or size the input merely claims
// must not raise it.
func allocBound(in, out int) uint64 { return uint64(8*in+4*out) + 4<<20 }

// hostileChunkInfoBlob is a blob of a few KiB whose blob table entry and
// meta header claim the largest chunk count a blob may have (2^24 chunks,
// 256 MiB of chunk info), while its zstd chunk-info section decompresses to
// 16 bytes.
func hostileChunkInfoBlob(t testing.TB) ([]byte, BlobEntry) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	ci := enc.EncodeAll(make([]byte, ChunkInfoV1Size), nil)
	var blob bytes.Buffer
	blob.Write(make([]byte, 4096)) // chunk data
	off := uint64(blob.Len())
	blob.Write(ci)
	e := BlobEntry{
		BlobID: "hostile", ChunkSize: DefaultChunkSize, ChunkCount: MaxChunksPerBlob, Compressor: CompressZstd,
		Features: BlobAligned, UncompressedSize: 1 << 40, MetaCompressor: CompressZstd,
		MetaOffset: off, MetaCompressedSize: uint64(len(ci)), MetaSize: MaxChunksPerBlob * ChunkInfoV1Size,
	}
	h := BlobMetaHeader{Features: e.Features, CICompressor: e.MetaCompressor, CIEntries: e.ChunkCount,
		CIOffset: e.MetaOffset, CICompressedSize: e.MetaCompressedSize, CISize: e.MetaSize}
	blob.Write(h.Marshal())
	e.CompressedSize = uint64(blob.Len())
	return blob.Bytes(), e
}

// TestHostileCountsAllocate: a small input claiming huge counts is refused
// without allocating for what it claims.
func TestHostileCountsAllocate(t *testing.T) {
	blob, e := hostileChunkInfoBlob(t)
	var err error
	n := allocated(func() { _, err = LoadChunkInfo(bytes.NewReader(blob), int64(len(blob)), e) })
	if err == nil {
		t.Fatal("chunk info of 16 bytes accepted for 2^24 chunks")
	}
	if max := allocBound(len(blob), 0); n > max {
		t.Errorf("loading %d bytes of chunk info claiming %d chunks allocated %d bytes, want at most %d (%v)",
			len(blob), e.ChunkCount, n, max, err)
	}
}
