package rafsbuild

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"github.com/nydus-go/nydusify/rafs"
)

// chunkRec is one chunk written to the blob; deduplicated chunks of other
// files point at the same record.
type chunkRec struct {
	blob       *blobWriter // the blob holding the chunk
	digest     [32]byte
	crc        uint32
	ciIndex    uint32
	coff       uint64
	csize      uint32
	uoff       uint64
	usize      uint32
	compressed bool
}

type chunkRef = *chunkRec

type dedupKey struct {
	digest [32]byte
	size   int
}

// job carries one chunk through the pipeline: read by the producer, hashed and
// compressed by a worker, written (or deduplicated) by the writer in the order
// it was read, so output is identical whatever the number of workers.
type job struct {
	data       []byte
	file       *fileData // its chunks grow by one as the writer commits the job
	digest     [32]byte
	crc        uint32
	out        []byte
	compressed bool
	skipped    bool // already in the blob: no need to compress
	ready      chan struct{}
}

// blobWriter cuts file contents into chunks and writes the blob: chunk data,
// then (finish) the chunk-info array, meta header, digest array and TOC in the
// blob-toc layout (§2.1). Memory is bounded by chunk size × queue depth.
type blobWriter struct {
	compressor rafs.Compressor
	digester   rafs.Digester
	chunkSize  uint64

	f  io.Writer
	bw *bufio.Writer
	// One running sha256: for a directory build the upstream blob id (every
	// byte but the digest array payload, §2.9); for a layer blob the whole
	// file (its registry digest, which names it in merged bootstraps).
	hash       hash.Hash
	layer      bool
	inlineMeta bool   // the blob will carry its bootstrap (INLINED_FS_META)
	toc        []byte // TOC entries so far
	pos        uint64
	uend       uint64 // end of the last chunk in the uncompressed view
	refs       uint64 // chunk references of the files added so far (addFile's goroutine)

	chunks    []*chunkRec // by chunk-info index
	dedup     map[dedupKey]*chunkRec
	dict      *ChunkDict  // chunks of other blobs to reuse; read-only while writing
	final     *blobResult // set once the blob is complete
	committed sync.Map    // dedupKey → true once written; read by workers

	work    chan *job
	order   chan *job
	writerD chan struct{}
	workers sync.WaitGroup
	failed  atomic.Pointer[error]
	bufs    bufPool // chunk-sized read buffers
	outs    bufPool // compression outputs, kept at length 0

	stats    blobStats
	progress struct{ files, bytes atomic.Uint64 } // read by the progress reporter
}

type blobStats struct {
	chunks      uint64 // chunks cut from file contents
	dedupChunks uint64 // of which were already stored (this blob or the dict)
	dictChunks  uint64 // of which were stored in a lower layer's blob
	dedupBytes  uint64
	dataBytes   uint64 // file bytes read
}

// newBlobWriter starts the chunk pipeline writing to f. A layer blob carries
// its own bootstrap and is also hashed whole, for its registry digest.
func newBlobWriter(f io.Writer, opts *Options, layer bool) *blobWriter {
	workers := opts.workers()
	depth := 4*workers + 8
	b := &blobWriter{
		compressor: opts.Compressor,
		digester:   opts.Digester,
		chunkSize:  uint64(opts.ChunkSize),
		f:          f,
		hash:       sha256.New(),
		layer:      layer,
		dedup:      map[dedupKey]*chunkRec{},
		work:       make(chan *job, depth),
		order:      make(chan *job, depth),
		writerD:    make(chan struct{}),
	}
	b.inlineMeta = layer
	b.bw = bufio.NewWriterSize(io.MultiWriter(f, b.hash), 1<<20)
	cs := int(b.chunkSize)
	b.bufs = newBufPool(2*depth, func() []byte { return make([]byte, cs) })
	b.outs = newBufPool(2*depth, func() []byte { return make([]byte, 0, cs+cs/64+64) })
	for range workers {
		b.workers.Add(1)
		go b.worker()
	}
	go b.writer()
	return b
}

// bufPool recycles buffers between the pipeline's stages. It is a channel
// rather than a sync.Pool because a slice stored in a sync.Pool is boxed in
// an interface, one allocation per Put on the per-chunk path.
type bufPool struct {
	free  chan []byte
	alloc func() []byte
}

func newBufPool(n int, alloc func() []byte) bufPool {
	return bufPool{free: make(chan []byte, n), alloc: alloc}
}

func (p bufPool) get() []byte {
	select {
	case buf := <-p.free:
		return buf
	default:
		return p.alloc()
	}
}

func (p bufPool) put(buf []byte) {
	select {
	case p.free <- buf:
	default: // full: let the collector have it
	}
}

func (b *blobWriter) fail(err error) {
	b.failed.CompareAndSwap(nil, &err)
}

func (b *blobWriter) err() error {
	if p := b.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// maxChunkRefs bounds the chunk references of one blob's files (8 bytes
// each in memory while building and again in the bootstrap): the most
// chunks one blob can index, 16 TiB of file data at the default chunk size.
// Files claiming more are refused before any of their bytes are read, so a
// header (or a sparse map) claiming petabytes costs nothing; within the
// bound, memory grows with the chunks actually read.
const maxChunkRefs = rafs.MaxChunksPerBlob

// shortReadError reports file content that ended before the size its entry
// claimed.
type shortReadError struct {
	got, want uint64
	err       error // io.EOF, io.ErrUnexpectedEOF, or a cause wrapping them
}

func (e *shortReadError) Error() string {
	return fmt.Sprintf("content ends after %d of its %d bytes: %v", e.got, e.want, e.err)
}

func (e *shortReadError) Unwrap() error { return e.err }

// addFile reads fd.size bytes from r and queues them as chunks. name is used
// in errors only. Content ending early is a *shortReadError. It must be
// called from one goroutine.
func (b *blobWriter) addFile(ctx context.Context, name string, fd *fileData, r io.Reader) error {
	n := (fd.size + b.chunkSize - 1) / b.chunkSize
	if n > maxChunkRefs-b.refs {
		return fmt.Errorf("%w: %s: %d bytes need %d chunks of %d bytes; the files of one blob may reference at most %d chunks",
			ErrUnsupported, name, fd.size, n, b.chunkSize, maxChunkRefs)
	}
	b.refs += n
	for i := range n {
		if err := b.err(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		size := min(b.chunkSize, fd.size-i*b.chunkSize)
		buf := b.bufs.get()[:size]
		if m, err := io.ReadFull(r, buf); err != nil {
			b.bufs.put(buf[:cap(buf)])
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return &shortReadError{got: i*b.chunkSize + uint64(m), want: fd.size, err: err}
			}
			return fmt.Errorf("reading %s: %w", name, err)
		}
		b.stats.dataBytes += size
		b.progress.bytes.Add(size)
		j := &job{data: buf, file: fd, ready: make(chan struct{})}
		b.order <- j
		b.work <- j
	}
	b.progress.files.Add(1)
	return nil
}

func (b *blobWriter) worker() {
	defer b.workers.Done()
	for j := range b.work {
		j.digest = b.digester.Sum(j.data)
		j.crc = rafs.CRC32C(j.data)
		key := dedupKey{j.digest, len(j.data)}
		if _, ok := b.committed.Load(key); ok || b.dict.has(key) {
			j.skipped = true
		} else if b.compressor != rafs.CompressNone {
			dst := b.outs.get()
			out, ok, err := b.compressor.Compress(dst, j.data)
			switch {
			case err != nil:
				b.fail(err)
				b.outs.put(dst[:0])
			case ok:
				j.out, j.compressed = out, true
			default: // incompressible: stored raw, out is j.data itself
				b.outs.put(dst[:0])
			}
		}
		close(j.ready)
	}
}

func (b *blobWriter) writer() {
	defer close(b.writerD)
	for j := range b.order {
		<-j.ready
		if b.err() == nil {
			if err := b.commit(j); err != nil {
				b.fail(err)
			}
		}
		b.bufs.put(j.data[:cap(j.data)])
		if j.out != nil {
			b.outs.put(j.out[:0])
		}
	}
}

// commit records j's chunk, writing it unless an identical chunk (same digest
// and size) is already in the blob.
func (b *blobWriter) commit(j *job) error {
	key := dedupKey{j.digest, len(j.data)}
	b.stats.chunks++
	rec, ok := b.dedup[key]
	if !ok && b.dict != nil {
		if rec, ok = b.dict.chunks[key]; ok {
			b.stats.dictChunks++
		}
	}
	if ok {
		j.file.chunks = append(j.file.chunks, rec)
		b.stats.dedupChunks++
		b.stats.dedupBytes += uint64(len(j.data))
		return nil
	}
	if len(b.chunks) >= rafs.MaxChunksPerBlob {
		return fmt.Errorf("%w: more than %d unique chunks in one blob", ErrUnsupported, rafs.MaxChunksPerBlob)
	}
	payload := j.data
	if j.compressed {
		payload = j.out
	}
	uoff := rafs.AlignUp(b.uend, rafs.BlockSize)
	if b.pos+uint64(len(payload)) >= 1<<40 || (uoff+uint64(len(j.data)))/rafs.BlockSize >= 1<<32 {
		return fmt.Errorf("%w: blob exceeds the format's size limits", ErrUnsupported)
	}
	rec = &chunkRec{
		blob: b, digest: j.digest, crc: j.crc, ciIndex: uint32(len(b.chunks)),
		coff: b.pos, csize: uint32(len(payload)),
		uoff: uoff, usize: uint32(len(j.data)), compressed: j.compressed,
	}
	if err := b.write(payload); err != nil {
		return err
	}
	b.uend = uoff + uint64(len(j.data))
	b.chunks = append(b.chunks, rec)
	b.dedup[key] = rec
	b.committed.Store(key, true)
	j.file.chunks = append(j.file.chunks, rec)
	return nil
}

func (b *blobWriter) write(p []byte) error {
	if _, err := b.bw.Write(p); err != nil {
		return fmt.Errorf("writing blob: %w", err)
	}
	b.pos += uint64(len(p))
	return nil
}

// drain stops the pipeline and waits for every queued chunk to be written.
func (b *blobWriter) drain() error {
	close(b.order)
	close(b.work)
	b.workers.Wait()
	<-b.writerD
	return b.err()
}

// blobResult describes a finished blob.
type blobResult struct {
	entry rafs.BlobEntry
	stats blobStats
	// meta is the uncompressed chunk-info array padded to 4 KiB plus the meta
	// header: nydusd's `<blob id>.blob.meta` file, shipped in the bootstrap
	// layer of converted images.
	meta []byte
	// digest is the sha256 of the whole blob file (layer blobs only): its
	// registry digest and its id in a merged bootstrap.
	digest string
}

// finishData ends the chunk stream and writes the chunk trailer of the
// blob-toc layout (§2.1): T(image.blob) ‖ ci ‖ header ‖ T(blob.meta) ‖
// digests ‖ T(blob.digest), with their TOC entries. Without chunks it writes
// nothing and the result has no chunk-info fields.
func (b *blobWriter) finishData() (*blobResult, error) {
	if err := b.drain(); err != nil {
		return nil, err
	}
	res := &blobResult{stats: b.stats}
	if len(b.chunks) == 0 {
		return res, nil
	}
	dataSize := b.pos
	if err := b.write(rafs.TarHeader(rafs.TOCImageBlob, dataSize)); err != nil {
		return nil, err
	}
	if err := b.bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing blob: %w", err)
	}
	// The image.blob digest covers the chunk data and its tar header: exactly
	// what the running hash has seen so far (§2.8).
	var imageBlobDigest [32]byte
	copy(imageBlobDigest[:], b.hash.Sum(nil))
	usize := rafs.AlignUp(b.uend, rafs.BlockSize)
	b.toc = rafs.AppendTOCEntry(b.toc, rafs.TOCEntry{
		Flags: rafs.CompressNone.TOCFlag(), Name: rafs.TOCImageBlob, Digest: imageBlobDigest,
		CompressedOffset: 0, CompressedSize: dataSize, UncompressedSize: usize,
	})

	ci := make([]byte, 0, len(b.chunks)*rafs.ChunkInfoV1Size)
	digests := make([]byte, 0, len(b.chunks)*rafs.DigestSize)
	for _, c := range b.chunks {
		ci = rafs.AppendChunkInfoV1(ci, rafs.BlobChunk{
			CompressedOffset: c.coff, CompressedSize: c.csize,
			UncompressedOffset: c.uoff, UncompressedSize: c.usize,
		})
		digests = append(digests, c.digest[:]...)
	}
	ciStored, ciCompressed, err := b.compressor.Compress(nil, ci)
	if err != nil {
		return nil, fmt.Errorf("compressing chunk info: %w", err)
	}
	ciCompressor := rafs.CompressNone
	if ciCompressed {
		ciCompressor = b.compressor
	}
	features := rafs.BlobAligned | rafs.BlobInlinedChunkDigest | rafs.BlobHasTarHeader | rafs.BlobHasTOC | rafs.BlobCapTarTOC
	if b.inlineMeta {
		features |= rafs.BlobInlinedFsMeta
	}
	ciOff := b.pos
	header := (&rafs.BlobMetaHeader{
		Features: features, CICompressor: ciCompressor, CIEntries: uint32(len(b.chunks)),
		CIOffset: ciOff, CICompressedSize: uint64(len(ciStored)), CISize: uint64(len(ci)),
	}).Marshal()
	for _, p := range [][]byte{ciStored, header, rafs.TarHeader(rafs.TOCBlobMeta, uint64(len(ciStored)+len(header)))} {
		if err := b.write(p); err != nil {
			return nil, err
		}
	}
	b.addTOC(rafs.TOCBlobMeta, ciCompressor, ci, ciOff, uint64(len(ciStored)))
	b.addTOC(rafs.TOCBlobMetaHeader, rafs.CompressNone, header, ciOff+uint64(len(ciStored)), uint64(len(header)))
	res.meta = append(append(ci, make([]byte, rafs.AlignUp(uint64(len(ci)), rafs.BlockSize)-uint64(len(ci)))...), header...)

	// The digest array bypasses the blob-id hash (§2.9); a layer's file
	// digest covers it.
	if err := b.bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing blob: %w", err)
	}
	digestOff := b.pos
	if _, err := b.f.Write(digests); err != nil {
		return nil, fmt.Errorf("writing blob: %w", err)
	}
	if b.layer {
		b.hash.Write(digests)
	}
	b.pos += uint64(len(digests))
	b.addTOC(rafs.TOCBlobDigest, rafs.CompressNone, digests, digestOff, uint64(len(digests)))
	if err := b.write(rafs.TarHeader(rafs.TOCBlobDigest, uint64(len(digests)))); err != nil {
		return nil, err
	}
	res.entry = rafs.BlobEntry{
		ChunkSize:          uint32(b.chunkSize),
		ChunkCount:         uint32(len(b.chunks)),
		Compressor:         b.compressor,
		Digester:           b.digester,
		Features:           features,
		CompressedSize:     b.pos,
		UncompressedSize:   usize,
		MetaCompressor:     ciCompressor,
		MetaOffset:         ciOff,
		MetaCompressedSize: uint64(len(ciStored)),
		MetaSize:           uint64(len(ci)),
	}
	return res, nil
}

func (b *blobWriter) addTOC(name string, c rafs.Compressor, content []byte, off, csize uint64) {
	b.toc = rafs.AppendTOCEntry(b.toc, rafs.TOCEntry{
		Flags: c.TOCFlag(), Name: name, Digest: sha256.Sum256(content),
		CompressedOffset: off, CompressedSize: csize, UncompressedSize: uint64(len(content)),
	})
}

// appendBootstrap inlines a layer's bootstrap, zstd-compressed unless that
// does not shrink it, followed by its tar header (§2.1).
func (b *blobWriter) appendBootstrap(boot []byte) error {
	stored, ok, err := rafs.CompressZstd.Compress(nil, boot)
	if err != nil {
		return fmt.Errorf("compressing bootstrap: %w", err)
	}
	c := rafs.CompressNone
	if ok {
		c = rafs.CompressZstd
	}
	off := b.pos
	if err := b.write(stored); err != nil {
		return err
	}
	b.addTOC(rafs.TOCImageBoot, c, boot, off, uint64(len(stored)))
	return b.write(rafs.TarHeader(rafs.TOCImageBoot, uint64(len(stored))))
}

// finishTOC ends the blob with its table of contents and fills in the final
// size, TOC and id fields of res.
func (b *blobWriter) finishTOC(res *blobResult) error {
	tocHeader := rafs.TarHeader(rafs.TOCName, uint64(len(b.toc)))
	tocDigest := sha256.Sum256(append(append([]byte{}, b.toc...), tocHeader...))
	for _, p := range [][]byte{b.toc, tocHeader} {
		if err := b.write(p); err != nil {
			return err
		}
	}
	if err := b.bw.Flush(); err != nil {
		return fmt.Errorf("writing blob: %w", err)
	}
	sum := hex.EncodeToString(b.hash.Sum(nil))
	if b.layer {
		res.digest = sum
	} else {
		res.entry.BlobID = sum
	}
	res.entry.CompressedSize = b.pos
	res.entry.TOCSize = uint32(len(b.toc) + len(tocHeader))
	res.entry.TOCDigest = tocDigest
	b.final = res
	return nil
}

// ChunkDict holds the chunks of finished layer blobs so that later layers
// of the same image store each chunk once (cross-layer dedup): a chunk
// found here is referenced in the lower blob instead of being written again.
// A dict must not be used by concurrent BuildLayer calls.
type ChunkDict struct {
	chunks map[dedupKey]*chunkRec
}

// NewChunkDict returns an empty dictionary.
func NewChunkDict() *ChunkDict { return &ChunkDict{chunks: map[dedupKey]*chunkRec{}} }

func (d *ChunkDict) has(k dedupKey) bool {
	if d == nil {
		return false
	}
	_, ok := d.chunks[k]
	return ok
}

// add records the chunks of a finished blob; lower layers win ties.
func (d *ChunkDict) add(b *blobWriter) {
	for k, rec := range b.dedup {
		if _, ok := d.chunks[k]; !ok {
			d.chunks[k] = rec
		}
	}
}

// finish completes a directory build's blob: chunk trailer, then TOC. It
// returns nil when no chunk was written: such a build has no blob at all.
func (b *blobWriter) finish() (*blobResult, error) {
	res, err := b.finishData()
	if err != nil || res.entry.ChunkCount == 0 {
		return nil, err
	}
	if err := b.finishTOC(res); err != nil {
		return nil, err
	}
	return res, nil
}
