// Package blobcache is the local chunk cache of the lazy mount path: it serves
// uncompressed chunks of one Nydus data blob, fetching each from a
// backend.Backend the first time it is read.
//
// A fetched chunk is decompressed and checked by the image's rafs.BlobReader
// against the sizes and digest the bootstrap's chunk table records, then
// written into a sparse file holding the blob's uncompressed view; only then
// is it served. Marks of ready chunks reach the chunk map file in batches,
// each after an fsync of the data it vouches for, so a crash can only lose
// marks, never leave a wrong one. Files in the cache
// directory, per blob id:
//
//	<id>.blob.data   the uncompressed view: chunk i at its UncompressedOffset,
//	                 holes where nothing was fetched (upstream nydusd's layout)
//	<id>.chunk_map   one byte per chunk-info index, 1 once the chunk is in
//	                 .blob.data (our own format, not upstream's chunk_map)
//	<id>.chunk_info  the blob size (8 bytes, little-endian) followed by the
//	                 blob's raw chunk-info array and compression-context header,
//	                 so reopening needs no backend request
//
// A read of a chunk that is not cached fetches, in the same backend request,
// the chunks that follow it in the blob up to Options.Amplify bytes, as
// upstream's amplify_io does: sequential reads of small files then cost one
// request per run instead of one per file. Prefetch fills the cache from a
// list of chunks with a bounded number of workers.
//
// A chunk found in the cache when Open ran is verified against the chunk
// table the first time it is served by this Cache, and only then: a chunk
// whose cached bytes changed on disk is logged, dropped and fetched again.
// Chunks fetched by this Cache were verified before they were written.
// One process at a time may use a blob's cache files (an flock guards them).
// It imports rafs and backend; it knows nothing of files or FUSE.
package blobcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/rafs"
)

// ErrDigestMismatch is wrapped by errors about chunks whose data does not
// match the digest the bootstrap's chunk table records for them. It is
// rafs.ErrDigestMismatch: rafs does the verifying.
var ErrDigestMismatch = rafs.ErrDigestMismatch

// Options configure Open. The zero value logs nothing and amplifies reads
// to DefaultAmplify.
type Options struct {
	// Logger receives a warning for every chunk that fails to fetch or
	// verify. Nil discards (see internal/logs).
	Logger logrus.FieldLogger
	// Amplify is how many compressed bytes one backend request may cover
	// when a chunk is fetched: the chunks that follow it in the blob come
	// along while they fit. 0 means DefaultAmplify; negative fetches one
	// chunk per request.
	Amplify int64
}

// DefaultAmplify is the read amplification when Options.Amplify is 0, the
// same as upstream nydusd's default amplify_io.
const DefaultAmplify = 1 << 20

// flushInterval is how often marks of newly cached chunks are made durable.
const flushInterval = 500 * time.Millisecond

// syncData makes the blob's view durable before marks are written; a test
// holds a flush inside it.
var syncData = (*os.File).Sync

// Cache serves the chunks of one blob. It is safe for concurrent use; at most
// one fetch per chunk is in flight, and concurrent readers of a chunk being
// fetched wait for it.
type Cache struct {
	be      backend.Backend
	blob    *rafs.BlobReader
	logger  logrus.FieldLogger
	amplify int64
	data    *os.File
	cmap    *os.File
	ready   []atomic.Bool
	// verified: the chunk's cached bytes were checked, or written, by
	// this Cache.
	verified []atomic.Bool

	mu       sync.Mutex // guards inflight
	inflight map[uint32]*fetch

	flushMu sync.Mutex // guards pending
	pending []uint32   // ready chunks whose marks are not yet in cmap
	stop    chan struct{}
	stopped chan struct{}
}

// fetch is one chunk being fetched; done closes when err is set.
type fetch struct {
	i    uint32
	done chan struct{}
	err  error
}

// Open opens, creating it if needed, the cache in dir of blob index (of
// img's blob table). Every chunk is verified by img's blob reader against
// the bootstrap's chunk table before it is cached; a chunk the table does
// not record cannot be read. The blob's chunk-info array is read through
// be, or from dir when an earlier Open saved it.
func Open(ctx context.Context, dir string, be backend.Backend, img *rafs.Image, index int, opts Options) (_ *Cache, err error) {
	blobs := img.Bootstrap().Blobs
	if index < 0 || index >= len(blobs) {
		return nil, fmt.Errorf("the bootstrap has no blob %d", index)
	}
	e := blobs[index]
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	c := &Cache{be: be, logger: logs.Or(opts.Logger), amplify: opts.Amplify, inflight: map[uint32]*fetch{}}
	switch {
	case c.amplify == 0:
		c.amplify = DefaultAmplify
	case c.amplify < 0:
		c.amplify = 0
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	base := filepath.Join(dir, e.BlobID)
	if c.cmap, err = os.OpenFile(base+".chunk_map", os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("opening chunk map: %w", err)
	}
	if err := unix.Flock(int(c.cmap.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("locking chunk map of blob %s (in use by another process?): %w", e.BlobID, err)
	}
	if c.blob, err = openBlob(ctx, base+".chunk_info", be, img, index); err != nil {
		return nil, err
	}
	if c.data, err = os.OpenFile(base+".blob.data", os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("opening blob data: %w", err)
	}
	st, err := c.data.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() != int64(e.UncompressedSize) {
		if err := c.data.Truncate(int64(e.UncompressedSize)); err != nil {
			return nil, fmt.Errorf("sizing blob data: %w", err)
		}
	}
	marks := make([]byte, c.blob.ChunkCount())
	if _, err := c.cmap.ReadAt(marks, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading chunk map: %w", err)
	}
	c.ready = make([]atomic.Bool, len(marks))
	c.verified = make([]atomic.Bool, len(marks))
	for i, m := range marks {
		c.ready[i].Store(m == 1)
	}
	c.stop, c.stopped = make(chan struct{}), make(chan struct{})
	go c.flusher()
	return c, nil
}

// openBlob gets img's reader of blob index over the blob's chunk-info
// region, from the saved copy at infoPath or, when that is missing or stale,
// read through be.
func openBlob(ctx context.Context, infoPath string, be backend.Backend, img *rafs.Image, index int) (*rafs.BlobReader, error) {
	e := img.Bootstrap().Blobs[index]
	if e.ChunkCount == 0 || img.Bootstrap().Version() == 5 {
		// Nothing to read: no chunks, or a v5 bootstrap, which says
		// itself where each chunk lies (its blobs hold only chunks).
		return img.BlobAt(index, bytes.NewReader(nil), 0)
	}
	regionSize := e.MetaCompressedSize + rafs.BlobMetaHeaderSize
	if e.MetaCompressedSize > e.MetaSize || e.MetaSize != uint64(e.ChunkCount)*rafs.ChunkInfoV1Size {
		return nil, fmt.Errorf("blob %s: chunk info size %d/%d for %d chunks", e.BlobID, e.MetaCompressedSize, e.MetaSize, e.ChunkCount)
	}
	if saved, err := os.ReadFile(infoPath); err == nil && uint64(len(saved)) == 8+regionSize {
		size := int64(binary.LittleEndian.Uint64(saved))
		if b, err := img.BlobAt(index, &regionReader{region: saved[8:], off: int64(e.MetaOffset)}, size); err == nil {
			return b, nil
		}
	}
	size, err := be.Size(ctx, e.BlobID)
	if err != nil {
		return nil, err
	}
	if e.MetaOffset > uint64(size) || regionSize > uint64(size)-e.MetaOffset {
		return nil, fmt.Errorf("blob %s: chunk info at %d+%d beyond the blob (%d bytes)", e.BlobID, e.MetaOffset, regionSize, size)
	}
	region := make([]byte, regionSize)
	if _, err := be.ReadAt(ctx, e.BlobID, region, int64(e.MetaOffset)); err != nil {
		return nil, fmt.Errorf("reading chunk info of blob %s: %w", e.BlobID, err)
	}
	b, err := img.BlobAt(index, &regionReader{region: region, off: int64(e.MetaOffset)}, size)
	if err != nil {
		return nil, err
	}
	saved := binary.LittleEndian.AppendUint64(nil, uint64(size))
	if err := atomicfile.WriteFile(infoPath, append(saved, region...), 0o600); err != nil {
		return nil, fmt.Errorf("saving chunk info of blob %s: %w", e.BlobID, err)
	}
	return b, nil
}

// regionReader serves the one region of a blob a rafs.BlobReader reads when
// it is made: the chunk-info array and its header. Chunk bytes are fetched
// through the backend and handed to DecodeChunk.
type regionReader struct {
	region []byte
	off    int64
}

func (r *regionReader) ReadAt(p []byte, off int64) (int, error) {
	if off < r.off || off+int64(len(p)) > r.off+int64(len(r.region)) {
		return 0, fmt.Errorf("read at %d+%d outside the cached chunk-info region", off, len(p))
	}
	return copy(p, r.region[off-r.off:]), nil
}

// Blob returns the blob's reader: its blob-table entry, chunk locations and
// the chunk-table checks (Resolve). Its ReadChunk cannot be used: the cache
// holds only the blob's chunk-info region.
func (c *Cache) Blob() *rafs.BlobReader { return c.blob }

// Ready reports whether chunk i is in the cache.
func (c *Cache) Ready(i uint32) bool { return int(i) < len(c.ready) && c.ready[i].Load() }

// ReadChunkAt reads len(p) bytes of the uncompressed chunk i, starting off
// bytes into it, fetching and verifying the chunk first if it is not cached.
// The range must lie within the chunk.
func (c *Cache) ReadChunkAt(ctx context.Context, i uint32, p []byte, off int64) (int, error) {
	ch, err := c.blob.Chunk(i)
	if err != nil {
		return 0, err
	}
	if off < 0 || off+int64(len(p)) > int64(ch.UncompressedSize) {
		return 0, fmt.Errorf("read of %d+%d outside chunk %d of blob %s (%d bytes)", off, len(p), i, c.blob.Entry.BlobID, ch.UncompressedSize)
	}
	if err := c.ensure(ctx, i); err != nil {
		return 0, err
	}
	if !c.verified[i].Load() {
		data, err := c.verifyCached(ctx, i, ch)
		if err != nil {
			return 0, err
		}
		if data != nil {
			return copy(p, data[off:]), nil
		}
	}
	n, err := c.data.ReadAt(p, int64(ch.UncompressedOffset)+off)
	if err != nil {
		return n, fmt.Errorf("reading cached chunk %d of blob %s: %w", i, c.blob.Entry.BlobID, err)
	}
	return n, nil
}

// ensure makes chunk i ready, fetching it unless another call already is.
// A failed fetch is not remembered: the next read tries again.
func (c *Cache) ensure(ctx context.Context, i uint32) error {
	if c.ready[i].Load() {
		return nil
	}
	c.mu.Lock()
	if f, ok := c.inflight[i]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.ready[i].Load() { // finished between the check and the lock
		c.mu.Unlock()
		return nil
	}
	run := c.claimLocked(i, c.amplify)
	c.mu.Unlock()
	c.fetchRun(ctx, run)
	return run[0].err
}

// verifyCached checks chunk i, cached before this Cache was opened, against
// the chunk table, and returns its bytes when they match. Bytes that do not
// match are logged and dropped (the chunk is no longer ready, its mark is
// cleared), and the chunk is fetched again; the read then goes to the view,
// with nil returned. Concurrent first reads may each verify; that is only
// work done twice.
func (c *Cache) verifyCached(ctx context.Context, i uint32, ch rafs.ChunkLocation) ([]byte, error) {
	e := &c.blob.Entry
	data := make([]byte, ch.UncompressedSize)
	if _, err := c.data.ReadAt(data, int64(ch.UncompressedOffset)); err != nil {
		return nil, fmt.Errorf("reading cached chunk %d of blob %s: %w", i, e.BlobID, err)
	}
	err := c.blob.VerifyChunk(i, data)
	if err == nil {
		c.verified[i].Store(true)
		return data, nil
	}
	c.logger.Warnf("blobcache: cached %v; dropping it and fetching it again", err)
	c.ready[i].Store(false)
	// Back to a hole: a chunk of zeros is not written when fetched.
	if perr := unix.Fallocate(int(c.data.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE,
		int64(ch.UncompressedOffset), int64(ch.UncompressedSize)); perr != nil {
		if _, werr := c.data.WriteAt(make([]byte, ch.UncompressedSize), int64(ch.UncompressedOffset)); werr != nil {
			return nil, fmt.Errorf("dropping cached chunk %d of blob %s: %w", i, e.BlobID, werr)
		}
	}
	if _, werr := c.cmap.WriteAt([]byte{0}, int64(i)); werr != nil {
		c.logger.Warnf("blobcache: clearing the mark of chunk %d of blob %s: %v", i, e.BlobID, werr)
	}
	if err := c.ensure(ctx, i); err != nil {
		return nil, err
	}
	return nil, nil
}

// claimLocked registers as in flight chunk i and the chunks that follow it
// contiguously in the blob, not ready, not in flight and in the chunk table,
// while the run's compressed size stays within limit. c.mu must be held.
func (c *Cache) claimLocked(i uint32, limit int64) []*fetch {
	run := []*fetch{{i: i, done: make(chan struct{})}}
	first := c.loc(i)
	end := first.CompressedOffset + uint64(first.CompressedSize)
	total := int64(first.CompressedSize)
	for k := i + 1; int(k) < c.blob.ChunkCount(); k++ {
		ch := c.loc(k)
		if ch.CompressedOffset != end || total+int64(ch.CompressedSize) > limit || c.ready[k].Load() {
			break
		}
		if _, ok := c.inflight[k]; ok {
			break
		}
		if !c.blob.InTable(k) {
			break
		}
		run = append(run, &fetch{i: k, done: make(chan struct{})})
		end += uint64(ch.CompressedSize)
		total += int64(ch.CompressedSize)
	}
	for _, f := range run {
		c.inflight[f.i] = f
	}
	return run
}

// fetchRun reads a claimed run with one backend request, then verifies and
// caches each chunk, settling every fetch of the run. The request is not
// cancelled with ctx, since other readers may wait for the same chunks; the
// backend's own timeouts bound it.
func (c *Cache) fetchRun(ctx context.Context, run []*fetch) {
	e := &c.blob.Entry
	first, last := c.loc(run[0].i), c.loc(run[len(run)-1].i)
	start := first.CompressedOffset
	raw := make([]byte, last.CompressedOffset+uint64(last.CompressedSize)-start)
	_, err := c.be.ReadAt(context.WithoutCancel(ctx), e.BlobID, raw, int64(start))
	if err != nil {
		err = fmt.Errorf("fetching chunks %d-%d of blob %s: %w", run[0].i, run[len(run)-1].i, e.BlobID, err)
	}
	for _, f := range run {
		f.err = err
		if err == nil {
			ch := c.loc(f.i)
			off := ch.CompressedOffset - start
			f.err = c.commit(f.i, raw[off:off+uint64(ch.CompressedSize)])
		}
		if f.err != nil {
			c.logger.Warn(f.err)
		}
	}
	c.mu.Lock()
	for _, f := range run {
		delete(c.inflight, f.i)
	}
	c.mu.Unlock()
	for _, f := range run {
		close(f.done)
	}
}

// commit decompresses and verifies the compressed bytes raw of chunk i, then
// writes them to the blob's view and marks the chunk ready.
func (c *Cache) commit(i uint32, raw []byte) error {
	e := &c.blob.Entry
	ch := c.loc(i)
	data, err := c.blob.DecodeChunk(i, raw, nil)
	if err != nil {
		return err
	}
	// Zero data needs no write: the view file reads as zeros there.
	if !allZero(data) {
		if _, err := c.data.WriteAt(data, int64(ch.UncompressedOffset)); err != nil {
			return fmt.Errorf("caching chunk %d of blob %s: %w", i, e.BlobID, err)
		}
	}
	c.flushMu.Lock()
	c.pending = append(c.pending, i)
	c.flushMu.Unlock()
	c.verified[i].Store(true)
	c.ready[i].Store(true)
	return nil
}

// Prefetch fetches the listed chunks that are not cached yet, with at most
// workers backend requests at once, each covering a run of neighbouring
// chunks up to the amplification size. It returns how many chunks it
// fetched and the errors of those it could not (each also logged); chunks
// the bootstrap's chunk table does not record are skipped. It stops early when ctx is cancelled.
func (c *Cache) Prefetch(ctx context.Context, chunks []uint32, workers int) (int, error) {
	idx := slices.Clone(chunks)
	slices.Sort(idx)
	idx = slices.Compact(idx)
	workers = max(workers, 1)
	limit := max(c.amplify, 1)
	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, workers)
		errMu   sync.Mutex
		errs    []error
		fetched atomic.Int64
	)
	for _, i := range idx {
		if int(i) >= c.blob.ChunkCount() || c.ready[i].Load() || !c.blob.InTable(i) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return int(fetched.Load()), ctx.Err()
		}
		c.mu.Lock()
		_, busy := c.inflight[i]
		var run []*fetch
		if !busy && !c.ready[i].Load() {
			run = c.claimLocked(i, limit)
		}
		c.mu.Unlock()
		if run == nil {
			<-sem
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.fetchRun(ctx, run)
			for _, f := range run {
				if f.err == nil {
					fetched.Add(1)
				} else {
					errMu.Lock()
					errs = append(errs, f.err)
					errMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return int(fetched.Load()), errors.Join(errs...)
}

// flusher makes marks durable every flushInterval until Close.
func (c *Cache) flusher() {
	defer close(c.stopped)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.flush(); err != nil {
				c.logger.Warnf("blobcache: %v", err)
			}
		}
	}
}

// flush syncs the blob's view, then writes the marks of the chunks cached
// before the sync: a mark never reaches the chunk map ahead of its data.
// Readers committing chunks meanwhile are not held up by the fsync. Only
// the flusher, and Close after it has stopped, call it.
func (c *Cache) flush() error {
	c.flushMu.Lock()
	pending := c.pending
	c.pending = nil
	c.flushMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	if err := c.writeMarks(pending); err != nil {
		// Keep them for the next flush, as if this one never ran.
		c.flushMu.Lock()
		c.pending = append(c.pending, pending...)
		c.flushMu.Unlock()
		return err
	}
	return nil
}

func (c *Cache) writeMarks(pending []uint32) error {
	e := &c.blob.Entry
	if err := syncData(c.data); err != nil {
		return fmt.Errorf("syncing blob data of %s: %w", e.BlobID, err)
	}
	slices.Sort(pending)
	one := []byte{1}
	for _, i := range pending {
		if _, err := c.cmap.WriteAt(one, int64(i)); err != nil {
			return fmt.Errorf("marking chunk %d of blob %s: %w", i, e.BlobID, err)
		}
	}
	return nil
}

// loc returns the location of chunk i, which the caller knows exists.
func (c *Cache) loc(i uint32) rafs.ChunkLocation {
	ch, _ := c.blob.Chunk(i)
	return ch
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

// Close makes the marks of cached chunks durable and closes the cache
// files. Reads must have finished.
func (c *Cache) Close() error {
	var errs []error
	if c.stop != nil {
		close(c.stop)
		<-c.stopped
		c.stop = nil
		errs = append(errs, c.flush())
	}
	for _, f := range []*os.File{c.data, c.cmap} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
