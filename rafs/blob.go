package rafs

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"slices"
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
// The size is what the bootstrap or blob claims: memory is reserved for at
// most a generous ratio of the input, and the output grows past that only as
// the data really decompresses.
func decompressLarge(c Compressor, src []byte, size uint64) ([]byte, error) {
	switch c {
	case CompressZstd:
		out, err := zstdDecoder.DecodeAll(src, make([]byte, 0, min(size, 64*uint64(len(src))+4096)))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		return out, nil
	default:
		return c.Decompress(nil, src, int(size))
	}
}

// ErrDigestMismatch is wrapped by errors about chunks whose data does not
// match the digest the bootstrap's chunk table records for them. It wraps
// ErrCorrupt.
var ErrDigestMismatch = fmt.Errorf("%w: chunk digest mismatch", ErrCorrupt)

// BlobReader reads the chunks of one data blob of an Image. Every chunk it
// returns was checked against the bootstrap's chunk table: its sizes and
// offsets when the reader was made, its digest when it is read. A chunk the
// table does not record cannot be read. The blob's own digest array is never
// consulted. Get one from Image.Blob or Image.BlobAt; it is safe for
// concurrent use.
type BlobReader struct {
	// Entry is the blob's entry in the bootstrap's blob table.
	Entry BlobEntry
	index int
	r     io.ReaderAt
	bs    uint64 // block size of block addresses; 0: none to check (v5)
	src   ChunkInfoSource
	table map[uint32]ChunkInfo // this blob's chunk-table records; read only
}

// newBlobReader loads the chunk-info source of blob index (entry e) from r
// and checks that every record the bootstrap's chunk table holds for the
// blob agrees with it.
func newBlobReader(index int, e BlobEntry, r io.ReaderAt, size int64, bs uint64,
	table map[uint32]ChunkInfo, load ChunkInfoLoader) (*BlobReader, error) {
	src, err := load(r, size, e)
	if err != nil {
		return nil, err
	}
	if src.Len() != int(e.ChunkCount) {
		return nil, corruptf("blob %s: chunk info holds %d chunks, the blob table says %d", e.BlobID, src.Len(), e.ChunkCount)
	}
	// In index order, so the first disagreement is the one reported.
	for _, ci := range slices.Sorted(maps.Keys(table)) {
		rec := table[ci]
		if int(ci) >= src.Len() {
			return nil, corruptf("chunk table names chunk %d of blob %s, which has %d", ci, e.BlobID, src.Len())
		}
		if rec.Flags&(ChunkEncrypted|ChunkBatch) != 0 {
			return nil, fmt.Errorf("blob %s chunk %d: chunk flags %#x are not supported yet", e.BlobID, ci, rec.Flags)
		}
		loc := src.Chunk(ci)
		want := ChunkLocation{
			CompressedOffset: rec.CompressedOffset, CompressedSize: rec.CompressedSize,
			UncompressedOffset: rec.UncompressedOffset, UncompressedSize: rec.UncompressedSize,
			Compressed: rec.Flags&ChunkCompressed != 0,
		}
		if loc != want {
			return nil, corruptf("blob %s chunk %d: the blob's chunk info says %+v, the bootstrap's chunk table %+v", e.BlobID, ci, loc, want)
		}
	}
	return &BlobReader{Entry: e, index: index, r: r, bs: bs, src: src, table: table}, nil
}

// ChunkCount returns how many chunks the blob holds.
func (b *BlobReader) ChunkCount() int { return b.src.Len() }

// Chunk returns where chunk i lies. For a chunk InTable reports, the
// location agrees with the bootstrap's chunk table.
func (b *BlobReader) Chunk(i uint32) (ChunkLocation, error) {
	if int(i) >= b.src.Len() {
		return ChunkLocation{}, corruptf("blob %s has no chunk %d", b.Entry.BlobID, i)
	}
	return b.src.Chunk(i), nil
}

// InTable reports whether the bootstrap's chunk table records chunk i: only
// such chunks have a digest to be verified against, and so can be read.
// Every chunk a file of the image uses is recorded.
func (b *BlobReader) InTable(i uint32) bool {
	_, ok := b.table[i]
	return ok
}

// TableChunks returns, in ascending order, the chunk indexes the
// bootstrap's chunk table records for this blob.
func (b *BlobReader) TableChunks() []uint32 {
	return slices.Sorted(maps.Keys(b.table))
}

// Resolve checks chunk index a of a file, which must name this blob and
// hold length bytes of the file, against the bootstrap's chunk table: the
// chunk must be recorded there, at the block address a gives, with that
// many bytes. It returns the chunk's location.
func (b *BlobReader) Resolve(a ChunkAddr, length uint64) (ChunkLocation, error) {
	if int(a.BlobIndex) != b.index {
		return ChunkLocation{}, fmt.Errorf("chunk index names blob %d, not %d", a.BlobIndex, b.index)
	}
	rec, ok := b.table[a.CIIndex]
	switch {
	case !ok:
		return ChunkLocation{}, corruptf("blob %d chunk %d is not in the bootstrap's chunk table", a.BlobIndex, a.CIIndex)
	case b.bs != 0 && rec.UncompressedOffset != uint64(a.BlkAddr)*b.bs:
		return ChunkLocation{}, corruptf("block address %d disagrees with blob %d chunk %d at %d", a.BlkAddr, a.BlobIndex, a.CIIndex, rec.UncompressedOffset)
	case uint64(rec.UncompressedSize) != length:
		return ChunkLocation{}, corruptf("blob %d chunk %d holds %d bytes, the file needs %d there", a.BlobIndex, a.CIIndex, rec.UncompressedSize, length)
	}
	return b.src.Chunk(a.CIIndex), nil
}

// ReadChunk reads chunk i from the blob and returns its uncompressed bytes,
// appended to dst[:0], once they match the chunk table's digest.
func (b *BlobReader) ReadChunk(i uint32, dst []byte) ([]byte, error) {
	if _, ok := b.table[i]; !ok {
		return nil, corruptf("chunk %d of blob %s is not in the bootstrap's chunk table", i, b.Entry.BlobID)
	}
	c := b.src.Chunk(i)
	raw := make([]byte, c.CompressedSize)
	if _, err := b.r.ReadAt(raw, int64(c.CompressedOffset)); err != nil {
		return nil, fmt.Errorf("reading chunk %d of blob %s: %w", i, b.Entry.BlobID, orCorrupt(err))
	}
	return b.DecodeChunk(i, raw, dst)
}

// DecodeChunk decompresses raw, the stored bytes of chunk i that a caller
// fetched itself (a cache reading a remote blob), and returns the chunk,
// appended to dst[:0], once it matches the chunk table's sizes and digest.
// A mismatching digest yields an error wrapping ErrDigestMismatch.
func (b *BlobReader) DecodeChunk(i uint32, raw, dst []byte) ([]byte, error) {
	rec, ok := b.table[i]
	if !ok {
		return nil, corruptf("chunk %d of blob %s is not in the bootstrap's chunk table", i, b.Entry.BlobID)
	}
	if uint64(len(raw)) != uint64(rec.CompressedSize) {
		return nil, corruptf("chunk %d of blob %s: %d stored bytes, the chunk table says %d", i, b.Entry.BlobID, len(raw), rec.CompressedSize)
	}
	alg := CompressNone
	if rec.Flags&ChunkCompressed != 0 {
		alg = b.Entry.Compressor
	}
	out, err := alg.Decompress(dst, raw, int(rec.UncompressedSize))
	if err != nil {
		return nil, fmt.Errorf("chunk %d of blob %s: %w", i, b.Entry.BlobID, err)
	}
	if uint64(len(out)) != uint64(rec.UncompressedSize) {
		return nil, corruptf("chunk %d of blob %s is %d bytes, the chunk table says %d", i, b.Entry.BlobID, len(out), rec.UncompressedSize)
	}
	if got := b.Entry.Digester.Sum(out); got != rec.Digest {
		return nil, fmt.Errorf("%w: chunk %d of blob %s at %d: %s %x, the chunk table says %x",
			ErrDigestMismatch, i, b.Entry.BlobID, rec.CompressedOffset, b.Entry.Digester, got[:8], rec.Digest[:8])
	}
	return out, nil
}

// VerifyChunk checks data, the uncompressed bytes of chunk i as a cache
// kept them, against the chunk table's size and digest. A mismatching digest
// yields an error wrapping ErrDigestMismatch.
func (b *BlobReader) VerifyChunk(i uint32, data []byte) error {
	rec, ok := b.table[i]
	switch {
	case !ok:
		return corruptf("chunk %d of blob %s is not in the bootstrap's chunk table", i, b.Entry.BlobID)
	case uint64(len(data)) != uint64(rec.UncompressedSize):
		return corruptf("chunk %d of blob %s is %d bytes, the chunk table says %d", i, b.Entry.BlobID, len(data), rec.UncompressedSize)
	}
	if got := b.Entry.Digester.Sum(data); got != rec.Digest {
		return fmt.Errorf("%w: chunk %d of blob %s: %s %x, the chunk table says %x",
			ErrDigestMismatch, i, b.Entry.BlobID, b.Entry.Digester, got[:8], rec.Digest[:8])
	}
	return nil
}

// ViewFile is what WriteBlobView writes into: an *os.File satisfies it.
type ViewFile interface {
	io.WriterAt
	Truncate(size int64) error
}

// WriteBlobView expands every chunk the bootstrap's chunk table records for
// b to its uncompressed offset in dst and sizes dst to the blob's
// uncompressed size: the layout of nydusd's blob cache file
// `<blob id>.blob.data`, which EROFS reads as the blob's device (§2.12).
// Gaps, and chunks no file uses, stay holes. Every chunk is verified before
// it is written.
func WriteBlobView(dst ViewFile, b *BlobReader) error {
	if err := dst.Truncate(int64(b.Entry.UncompressedSize)); err != nil {
		return fmt.Errorf("sizing blob view: %w", err)
	}
	var buf []byte
	for _, i := range b.TableChunks() {
		data, err := b.ReadChunk(i, buf)
		if err != nil {
			return err
		}
		buf = data
		if isZero(data) {
			continue
		}
		if _, err := dst.WriteAt(data, int64(b.src.Chunk(i).UncompressedOffset)); err != nil {
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
