package rafs

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
)

// ReadTOC reads the table of contents at the end of a blob of size bytes
// (§2.8). tocSize is the blob table's blob_toc_size, or 0 to auto-detect from
// the trailing tar header. It returns the entries and the sha256 of the
// entries plus their tar header (the digest the blob table records).
func ReadTOC(r io.ReaderAt, size int64, tocSize uint32) ([]TOCEntry, [32]byte, error) {
	var zero [32]byte
	if size < TarHeaderSize {
		return nil, zero, corruptf("blob of %d bytes has no TOC", size)
	}
	hdr := make([]byte, TarHeaderSize)
	if _, err := r.ReadAt(hdr, size-TarHeaderSize); err != nil {
		return nil, zero, fmt.Errorf("reading TOC header: %w", err)
	}
	name, n, err := ParseTarHeader(hdr)
	if err != nil {
		return nil, zero, err
	}
	if name != TOCName {
		return nil, zero, corruptf("blob ends with %q, not a TOC", name)
	}
	if n == 0 || n%TOCEntrySize != 0 || n > MaxTOCSize || int64(n) > size-TarHeaderSize {
		return nil, zero, corruptf("TOC size %d", n)
	}
	if tocSize != 0 && uint64(tocSize) != n+TarHeaderSize {
		return nil, zero, corruptf("TOC size %d, blob table says %d", n+TarHeaderSize, tocSize)
	}
	buf := make([]byte, n+TarHeaderSize)
	if _, err := r.ReadAt(buf, size-int64(len(buf))); err != nil {
		return nil, zero, fmt.Errorf("reading TOC: %w", err)
	}
	var out []TOCEntry
	for p := 0; p < int(n); p += TOCEntrySize {
		// Offsets are checked when a section is read: builders before
		// 2.2 recorded the end, not the start, of image.blob (§2.8).
		out = append(out, UnmarshalTOCEntry(buf[p:]))
	}
	return out, sha256.Sum256(buf), nil
}

// ReadTOCData reads and, if needed, decompresses the section e names, refusing
// sections larger than maxSize, and checks its sha256.
func ReadTOCData(r io.ReaderAt, e TOCEntry, maxSize uint64) ([]byte, error) {
	if e.CompressedSize > maxSize || e.UncompressedSize > maxSize {
		return nil, corruptf("TOC section %q of %d bytes exceeds %d", e.Name, e.UncompressedSize, maxSize)
	}
	c, err := e.Compressor()
	if err != nil {
		return nil, err
	}
	raw := make([]byte, e.CompressedSize)
	if _, err := r.ReadAt(raw, int64(e.CompressedOffset)); err != nil {
		return nil, fmt.Errorf("reading %s at %d+%d: %w", e.Name, e.CompressedOffset, e.CompressedSize, orCorrupt(err))
	}
	data := raw
	if c != CompressNone {
		if data, err = decompressLarge(c, raw, e.UncompressedSize); err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", e.Name, err)
		}
	}
	if uint64(len(data)) != e.UncompressedSize {
		return nil, corruptf("%s is %d bytes, TOC says %d", e.Name, len(data), e.UncompressedSize)
	}
	if sha256.Sum256(data) != e.Digest {
		return nil, corruptf("%s does not match its TOC digest", e.Name)
	}
	return data, nil
}

// decompressLarge decompresses metadata sections, which may exceed a chunk.
func decompressLarge(c Compressor, src []byte, size uint64) ([]byte, error) {
	switch c {
	case CompressZstd:
		out, err := zstdDecoder.DecodeAll(src, make([]byte, 0, size))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		return out, nil
	default:
		return c.Decompress(nil, src, int(size))
	}
}

// maxMetaSize bounds the chunk-info array and digest array we will load.
const maxMetaSize = MaxChunksPerBlob * (ChunkInfoV2Size + DigestSize)

// BlobReader reads chunks of one native data blob, verifying each against its
// digest. It is safe for concurrent use.
type BlobReader struct {
	r      io.ReaderAt
	size   int64
	Entry  BlobEntry
	Header BlobMetaHeader
	Chunks []BlobChunk
	// Digests maps chunk-info indexes to their expected digests; a chunk
	// missing from it (or a nil map) is not verified.
	Digests map[uint32][32]byte
}

// OpenBlob loads the chunk-info array of blob r described by entry e (from a
// bootstrap's blob table) and checks it against the compression-context
// header, as nydusd does (§2.3). digests, if non-nil, gives the expected
// chunk digests (from a bootstrap's chunk table); otherwise the blob's own
// digest array is used when it has one.
func OpenBlob(r io.ReaderAt, size int64, e BlobEntry, digests map[uint32][32]byte) (*BlobReader, error) {
	b := &BlobReader{r: r, size: size, Entry: e}
	if e.ChunkCount == 0 {
		return b, nil
	}
	if e.Features&(BlobChunkInfoV2|BlobTarfs|BlobEncrypted|BlobZran|BlobBatch|BlobSeparate) != 0 {
		return nil, fmt.Errorf("blob %s: features %#x are not supported yet", e.BlobID, uint32(e.Features))
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
	b.Header = h
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
	b.Chunks = make([]BlobChunk, e.ChunkCount)
	var prevUEnd uint64
	for i := range b.Chunks {
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
		b.Chunks[i] = c
	}
	switch {
	case digests != nil:
		for i := range digests {
			if int(i) >= len(b.Chunks) {
				return nil, corruptf("blob %s: a digest for chunk %d of %d", e.BlobID, i, len(b.Chunks))
			}
		}
		b.Digests = digests
	case e.Features&BlobInlinedChunkDigest != 0:
		if b.Digests, err = b.readDigestArray(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *BlobReader) readDigestArray() (map[uint32][32]byte, error) {
	toc, _, err := ReadTOC(b.r, b.size, b.Entry.TOCSize)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", b.Entry.BlobID, err)
	}
	for _, e := range toc {
		if e.Name != TOCBlobDigest {
			continue
		}
		if e.UncompressedSize != uint64(len(b.Chunks))*DigestSize {
			return nil, corruptf("blob %s digest array of %d bytes for %d chunks", b.Entry.BlobID, e.UncompressedSize, len(b.Chunks))
		}
		data, err := ReadTOCData(b.r, e, maxMetaSize)
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", b.Entry.BlobID, err)
		}
		out := make(map[uint32][32]byte, len(b.Chunks))
		for i := range b.Chunks {
			var d [32]byte
			copy(d[:], data[i*DigestSize:])
			out[uint32(i)] = d
		}
		return out, nil
	}
	return nil, corruptf("blob %s claims inlined chunk digests but its TOC has no %s", b.Entry.BlobID, TOCBlobDigest)
}

// ReadChunk returns the uncompressed bytes of chunk i, appended to dst[:0],
// after checking them against the chunk's digest when it is known.
func (b *BlobReader) ReadChunk(i uint32, dst []byte) ([]byte, error) {
	if int(i) >= len(b.Chunks) {
		return nil, corruptf("blob %s has no chunk %d", b.Entry.BlobID, i)
	}
	c := b.Chunks[i]
	raw := make([]byte, c.CompressedSize)
	if _, err := b.r.ReadAt(raw, int64(c.CompressedOffset)); err != nil {
		return nil, fmt.Errorf("reading chunk %d of blob %s: %w", i, b.Entry.BlobID, err)
	}
	alg := CompressNone
	if c.Compressed() {
		alg = b.Entry.Compressor
	}
	out, err := alg.Decompress(dst, raw, int(c.UncompressedSize))
	if err != nil {
		return nil, fmt.Errorf("chunk %d of blob %s: %w", i, b.Entry.BlobID, err)
	}
	if want, ok := b.Digests[i]; ok {
		if got := b.Entry.Digester.Sum(out); got != want {
			return nil, corruptf("chunk %d of blob %s: %s digest %x, want %x", i, b.Entry.BlobID, b.Entry.Digester, got[:8], want[:8])
		}
	}
	return out, nil
}

// ViewFile is what WriteBlobView writes into: an *os.File satisfies it.
type ViewFile interface {
	io.WriterAt
	Truncate(size int64) error
}

// WriteBlobView expands every chunk of b to its uncompressed offset in dst
// and sizes dst to the blob's uncompressed size: the layout of nydusd's blob
// cache file `<blob id>.blob.data`, which EROFS reads as the blob's device
// (§2.12). Gaps stay holes. Every chunk is verified before it is written.
func WriteBlobView(dst ViewFile, b *BlobReader) error {
	if err := dst.Truncate(int64(b.Entry.UncompressedSize)); err != nil {
		return fmt.Errorf("sizing blob view: %w", err)
	}
	var buf []byte
	for i, c := range b.Chunks {
		data, err := b.ReadChunk(uint32(i), buf)
		if err != nil {
			return err
		}
		buf = data
		if isZero(data) {
			continue
		}
		if _, err := dst.WriteAt(data, int64(c.UncompressedOffset)); err != nil {
			return fmt.Errorf("writing blob view: %w", err)
		}
	}
	return nil
}

var zeroBlock [BlockSize]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), BlockSize)
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
