// Package blobcache is the local chunk cache of the lazy mount path: it serves
// uncompressed chunks of one Nydus data blob, fetching each from a
// backend.Backend the first time it is read.
//
// A fetched chunk is decompressed, checked against the digest the bootstrap's
// chunk table records, written into a sparse file holding the blob's
// uncompressed view and fsynced; only then is it marked ready, so a chunk is
// never served unverified and a crash can only lose marks, never leave a wrong
// one. Files in the cache directory, per blob id:
//
//	<id>.blob.data   the uncompressed view: chunk i at its UncompressedOffset,
//	                 holes where nothing was fetched (upstream nydusd's layout)
//	<id>.chunk_map   one byte per chunk-info index, 1 once the chunk is in
//	                 .blob.data (our own format, not upstream's chunk_map)
//	<id>.chunk_info  the blob size (8 bytes, little-endian) followed by the
//	                 blob's raw chunk-info array and compression-context header,
//	                 so reopening needs no backend request
//
// Cached bytes are trusted once marked: they are not re-hashed on later reads.
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
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/rafs"
)

// ErrDigestMismatch is wrapped by errors about chunks whose data does not
// match the digest the bootstrap records for them.
var ErrDigestMismatch = errors.New("blobcache: chunk digest mismatch")

// Options configure Open. The zero value logs nothing.
type Options struct {
	// Logger receives a line for every chunk that fails to fetch or verify.
	Logger *log.Logger
}

// Cache serves the chunks of one blob. It is safe for concurrent use; at most
// one fetch per chunk is in flight, and concurrent readers of a chunk being
// fetched wait for it.
type Cache struct {
	be     backend.Backend
	blob   *rafs.BlobReader
	logger *log.Logger
	data   *os.File
	cmap   *os.File
	ready  []atomic.Bool

	mu       sync.Mutex // guards inflight
	inflight map[uint32]*fetch
}

type fetch struct {
	done chan struct{}
	err  error
}

// Open opens, creating it if needed, the cache of blob e (an entry of the
// bootstrap's blob table) in dir. digests maps every chunk-info index a file
// references to its digest (rafs.Reader.ChunkDigests); a chunk with no
// digest cannot be read. The blob's chunk-info array is read through be, or
// from dir when an earlier Open saved it.
func Open(ctx context.Context, dir string, be backend.Backend, e rafs.BlobEntry, digests map[uint32][32]byte, opts Options) (_ *Cache, err error) {
	if digests == nil {
		return nil, fmt.Errorf("blob %s: no chunk digests given", e.BlobID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	c := &Cache{be: be, logger: opts.Logger, inflight: map[uint32]*fetch{}}
	if c.logger == nil {
		c.logger = log.New(io.Discard, "", 0)
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
	if c.blob, err = openBlob(ctx, base+".chunk_info", be, e, digests); err != nil {
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
	marks := make([]byte, len(c.blob.Chunks))
	if _, err := c.cmap.ReadAt(marks, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading chunk map: %w", err)
	}
	c.ready = make([]atomic.Bool, len(marks))
	for i, m := range marks {
		c.ready[i].Store(m == 1)
	}
	return c, nil
}

// openBlob loads the chunk list of e from the saved copy at infoPath or, when
// that is missing or stale, by reading the chunk-info region through be.
func openBlob(ctx context.Context, infoPath string, be backend.Backend, e rafs.BlobEntry, digests map[uint32][32]byte) (*rafs.BlobReader, error) {
	if e.ChunkCount == 0 {
		return rafs.OpenBlob(bytes.NewReader(nil), 0, e, digests)
	}
	regionSize := e.MetaCompressedSize + rafs.BlobMetaHeaderSize
	if e.MetaCompressedSize > e.MetaSize || e.MetaSize != uint64(e.ChunkCount)*rafs.ChunkInfoV1Size {
		return nil, fmt.Errorf("blob %s: chunk info size %d/%d for %d chunks", e.BlobID, e.MetaCompressedSize, e.MetaSize, e.ChunkCount)
	}
	if saved, err := os.ReadFile(infoPath); err == nil && uint64(len(saved)) == 8+regionSize {
		size := int64(binary.LittleEndian.Uint64(saved))
		if b, err := rafs.OpenBlob(&regionReader{region: saved[8:], off: int64(e.MetaOffset)}, size, e, digests); err == nil {
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
	b, err := rafs.OpenBlob(&regionReader{region: region, off: int64(e.MetaOffset)}, size, e, digests)
	if err != nil {
		return nil, err
	}
	saved := binary.LittleEndian.AppendUint64(nil, uint64(size))
	if err := writeFileAtomic(infoPath, append(saved, region...)); err != nil {
		return nil, fmt.Errorf("saving chunk info of blob %s: %w", e.BlobID, err)
	}
	return b, nil
}

// regionReader serves the one region of a blob rafs.OpenBlob reads when it
// is given the chunk digests.
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

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".chunk-info-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Blob returns the blob's metadata: its blob-table entry and chunk list.
// The caller must not modify it.
func (c *Cache) Blob() *rafs.BlobReader { return c.blob }

// Ready reports whether chunk i is in the cache.
func (c *Cache) Ready(i uint32) bool { return int(i) < len(c.ready) && c.ready[i].Load() }

// ReadChunkAt reads len(p) bytes of the uncompressed chunk i, starting off
// bytes into it, fetching and verifying the chunk first if it is not cached.
// The range must lie within the chunk.
func (c *Cache) ReadChunkAt(ctx context.Context, i uint32, p []byte, off int64) (int, error) {
	if int(i) >= len(c.blob.Chunks) {
		return 0, fmt.Errorf("blob %s has no chunk %d", c.blob.Entry.BlobID, i)
	}
	ch := c.blob.Chunks[i]
	if off < 0 || off+int64(len(p)) > int64(ch.UncompressedSize) {
		return 0, fmt.Errorf("read of %d+%d outside chunk %d of blob %s (%d bytes)", off, len(p), i, c.blob.Entry.BlobID, ch.UncompressedSize)
	}
	if err := c.ensure(ctx, i); err != nil {
		return 0, err
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
	f := &fetch{done: make(chan struct{})}
	c.inflight[i] = f
	c.mu.Unlock()

	f.err = c.fetch(ctx, i)
	if f.err != nil {
		c.logger.Printf("blobcache: %v", f.err)
	}
	c.mu.Lock()
	delete(c.inflight, i)
	c.mu.Unlock()
	close(f.done)
	return f.err
}

func (c *Cache) fetch(ctx context.Context, i uint32) error {
	e := &c.blob.Entry
	ch := c.blob.Chunks[i]
	want, ok := c.blob.Digests[i]
	if !ok {
		return fmt.Errorf("chunk %d of blob %s has no digest in the bootstrap", i, e.BlobID)
	}
	raw := make([]byte, ch.CompressedSize)
	if _, err := c.be.ReadAt(ctx, e.BlobID, raw, int64(ch.CompressedOffset)); err != nil {
		return fmt.Errorf("fetching chunk %d of blob %s: %w", i, e.BlobID, err)
	}
	alg := rafs.CompressNone
	if ch.Compressed() {
		alg = e.Compressor
	}
	data, err := alg.Decompress(nil, raw, int(ch.UncompressedSize))
	if err != nil {
		return fmt.Errorf("chunk %d of blob %s: %w", i, e.BlobID, err)
	}
	if got := e.Digester.Sum(data); got != want {
		return fmt.Errorf("%w: chunk %d of blob %s at %d: %s %x, want %x", ErrDigestMismatch, i, e.BlobID, ch.CompressedOffset, e.Digester, got[:8], want[:8])
	}
	// Zero data needs no write: the view file reads as zeros there.
	if !allZero(data) {
		if _, err := c.data.WriteAt(data, int64(ch.UncompressedOffset)); err != nil {
			return fmt.Errorf("caching chunk %d of blob %s: %w", i, e.BlobID, err)
		}
		if err := c.data.Sync(); err != nil {
			return fmt.Errorf("syncing blob data of %s: %w", e.BlobID, err)
		}
	}
	if _, err := c.cmap.WriteAt([]byte{1}, int64(i)); err != nil {
		return fmt.Errorf("marking chunk %d of blob %s: %w", i, e.BlobID, err)
	}
	c.ready[i].Store(true)
	return nil
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

// Close closes the cache files. Reads must have finished.
func (c *Cache) Close() error {
	var errs []error
	for _, f := range []*os.File{c.data, c.cmap} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
