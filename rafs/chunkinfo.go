package rafs

import (
	"fmt"
	"io"
)

// ChunkLocation says where one chunk of a data blob lies. A chunk-info
// source reports it from the blob's own metadata; an Image only uses it
// after checking it against the bootstrap's chunk table.
type ChunkLocation struct {
	// CompressedOffset and CompressedSize delimit the stored bytes in the
	// blob file.
	CompressedOffset uint64
	CompressedSize   uint32
	// UncompressedOffset and UncompressedSize delimit the chunk in the
	// blob's uncompressed view (the EROFS device of the blob, §2.12).
	UncompressedOffset uint64
	UncompressedSize   uint32
	// Compressed reports whether the stored bytes are compressed with the
	// blob's compressor; otherwise they are the chunk itself.
	Compressed bool
}

// ChunkInfoSource answers "where is chunk i of this blob": the part of the
// format that differs between chunk-info v1 (§2.4), v2 (§2.5) and ZRAN
// contexts (§2.6). Implementations decode and check everything when they are
// loaded, so lookups cannot fail; they must be safe for concurrent use.
//
// A source whose chunks cannot be decompressed on their own (ZRAN chunks
// point into a gzip stream and need an inflate dictionary) will also
// implement a decoding method, which the blob reader will look for by type
// assertion; nothing needs one yet.
type ChunkInfoSource interface {
	// Len returns how many chunks the blob holds: chunk indexes run from 0
	// to Len()-1.
	Len() int
	// Chunk returns the location of chunk i, 0 <= i < Len().
	Chunk(i uint32) ChunkLocation
}

// ChunkInfoLoader loads the chunk-info source of blob e (an entry of a
// bootstrap's blob table) from the blob's bytes r, size bytes long. A loader
// reads only the blob's metadata, never chunk data.
type ChunkInfoLoader func(r io.ReaderAt, size int64, e BlobEntry) (ChunkInfoSource, error)

// LoadChunkInfo is the default ChunkInfoLoader: it picks the source the
// blob's features call for. Chunk-info v1 is the only one implemented; v2,
// ZRAN, batch, encrypted and tarfs blobs are refused until their sources
// plug in here.
func LoadChunkInfo(r io.ReaderAt, size int64, e BlobEntry) (ChunkInfoSource, error) {
	if e.ChunkCount > 0 && e.Features&(BlobChunkInfoV2|BlobTarfs|BlobEncrypted|BlobZran|BlobBatch|BlobSeparate) != 0 {
		return nil, fmt.Errorf("blob %s: features %#x are not supported yet", e.BlobID, uint32(e.Features))
	}
	return LoadChunkInfoV1(r, size, e)
}

// chunkInfoV1 is the chunk-info v1 array of a blob, decoded.
type chunkInfoV1 []BlobChunk

var _ ChunkInfoSource = chunkInfoV1(nil)

func (c chunkInfoV1) Len() int { return len(c) }

func (c chunkInfoV1) Chunk(i uint32) ChunkLocation {
	b := c[i]
	return ChunkLocation{
		CompressedOffset: b.CompressedOffset, CompressedSize: b.CompressedSize,
		UncompressedOffset: b.UncompressedOffset, UncompressedSize: b.UncompressedSize,
		Compressed: b.Compressed(),
	}
}

// maxMetaSize bounds the chunk-info array we will load.
const maxMetaSize = MaxChunksPerBlob * (ChunkInfoV2Size + DigestSize)

// LoadChunkInfoV1 reads the chunk-info v1 array of blob r described by e and
// checks it against the compression-context header that follows it and
// against the blob's sizes, as nydusd does (§2.3, §2.4). It reads only the
// region [e.MetaOffset, e.MetaOffset+e.MetaCompressedSize+4096) of r.
func LoadChunkInfoV1(r io.ReaderAt, size int64, e BlobEntry) (ChunkInfoSource, error) {
	if e.ChunkCount == 0 {
		return chunkInfoV1(nil), nil
	}
	if e.MetaSize != uint64(e.ChunkCount)*ChunkInfoV1Size || e.MetaCompressedSize > maxMetaSize {
		return nil, corruptf("blob %s chunk info size %d for %d chunks", e.BlobID, e.MetaSize, e.ChunkCount)
	}
	if e.MetaOffset > uint64(size) || e.MetaCompressedSize+BlobMetaHeaderSize > uint64(size)-e.MetaOffset {
		return nil, corruptf("blob %s chunk info at %d beyond the blob (%d bytes)", e.BlobID, e.MetaOffset, size)
	}
	buf := make([]byte, e.MetaCompressedSize+BlobMetaHeaderSize)
	if _, err := r.ReadAt(buf, int64(e.MetaOffset)); err != nil {
		return nil, fmt.Errorf("reading chunk info of blob %s: %w", e.BlobID, err)
	}
	h, err := UnmarshalBlobMetaHeader(buf[e.MetaCompressedSize:])
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", e.BlobID, err)
	}
	// Features may differ: merged bootstraps clear INLINED_FS_META while the
	// blob's own header keeps it.
	if h.CICompressor != e.MetaCompressor || h.CIEntries != e.ChunkCount ||
		h.CIOffset != e.MetaOffset || h.CICompressedSize != e.MetaCompressedSize || h.CISize != e.MetaSize {
		return nil, corruptf("blob %s meta header disagrees with the blob table", e.BlobID)
	}
	ci := buf[:e.MetaCompressedSize]
	if e.MetaCompressor != CompressNone {
		if ci, err = decompressLarge(e.MetaCompressor, ci, e.MetaSize); err != nil {
			return nil, fmt.Errorf("blob %s chunk info: %w", e.BlobID, err)
		}
	}
	if uint64(len(ci)) != e.MetaSize {
		return nil, corruptf("blob %s chunk info is %d bytes, want %d", e.BlobID, len(ci), e.MetaSize)
	}
	dataEnd := e.MetaOffset
	if e.Features&BlobHasTarHeader != 0 {
		if dataEnd < TarHeaderSize {
			return nil, corruptf("blob %s chunk info offset %d", e.BlobID, dataEnd)
		}
		dataEnd -= TarHeaderSize
	}
	chunks := make(chunkInfoV1, e.ChunkCount)
	var prevUEnd uint64
	for i := range chunks {
		c := UnmarshalChunkInfoV1(ci[i*ChunkInfoV1Size:])
		switch {
		case c.CompressedOffset+uint64(c.CompressedSize) > dataEnd:
			return nil, corruptf("blob %s chunk %d data beyond the chunk area", e.BlobID, i)
		case c.UncompressedOffset+uint64(c.UncompressedSize) > e.UncompressedSize:
			return nil, corruptf("blob %s chunk %d beyond the uncompressed size", e.BlobID, i)
		case c.UncompressedSize > e.ChunkSize:
			return nil, corruptf("blob %s chunk %d larger than the chunk size", e.BlobID, i)
		case c.UncompressedOffset < prevUEnd:
			return nil, corruptf("blob %s chunk %d overlaps its predecessor", e.BlobID, i)
		case e.Compressor == CompressNone && c.Compressed():
			return nil, corruptf("blob %s chunk %d is compressed in an uncompressed blob", e.BlobID, i)
		}
		prevUEnd = c.UncompressedOffset + uint64(c.UncompressedSize)
		chunks[i] = c
	}
	return chunks, nil
}
