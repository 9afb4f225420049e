package rafs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// BlobOpener gives an Image the bytes of its data blobs. Local files, a
// directory of blobs, a cache or a remote backend adapted to io.ReaderAt all
// fit; what it returns is trusted for nothing but bytes.
type BlobOpener interface {
	// OpenBlob returns random access to blob index (entry e of the
	// bootstrap's blob table) and its size in bytes. When the returned
	// io.ReaderAt is also an io.Closer, the Image closes it in Close.
	OpenBlob(index int, e BlobEntry) (io.ReaderAt, int64, error)
}

// BlobOpenerFunc adapts a function to BlobOpener.
type BlobOpenerFunc func(index int, e BlobEntry) (io.ReaderAt, int64, error)

// OpenBlob implements BlobOpener.
func (f BlobOpenerFunc) OpenBlob(index int, e BlobEntry) (io.ReaderAt, int64, error) {
	return f(index, e)
}

// ImageOption configures NewImage and OpenImage.
type ImageOption func(*Image) error

// WithChunkInfoLoader replaces LoadChunkInfo, the default, as the way the
// chunk-info source of each blob is loaded. Whatever the source says is
// still checked against the bootstrap's chunk table.
func WithChunkInfoLoader(l ChunkInfoLoader) ImageOption {
	return func(img *Image) error {
		if l == nil {
			return errors.New("rafs: nil chunk-info loader")
		}
		img.load = l
		return nil
	}
}

// Image is a RAFS image: a bootstrap and the data blobs its blob table
// names. It owns the trust chain described in the package documentation:
// every chunk it reads is checked against the bootstrap's chunk table.
// Blobs are opened on first use, each once. All methods are safe for
// concurrent use, except Close.
type Image struct {
	boot   *Reader
	opener BlobOpener
	load   ChunkInfoLoader
	blobs  []blobSlot // indexed like the blob table
}

// blobSlot is one blob, opened at most once.
type blobSlot struct {
	once   sync.Once
	br     *BlobReader
	err    error
	closer io.Closer
}

// NewImage returns the image of bootstrap boot whose blobs blobs opens.
// blobs may be nil: the metadata can then be read, file data cannot.
func NewImage(boot *Reader, blobs BlobOpener, opts ...ImageOption) (*Image, error) {
	img := &Image{boot: boot, opener: blobs, load: LoadChunkInfo, blobs: make([]blobSlot, len(boot.Blobs))}
	if boot.v5 != nil {
		// v5 blobs hold only chunks: the bootstrap says where they lie.
		img.load = boot.v5Loader
	}
	for _, o := range opts {
		if err := o(img); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// OpenImage opens the bootstrap held in r (size bytes) with Open and
// returns its image, whose blobs blobs opens (nil: none).
func OpenImage(r io.ReaderAt, size int64, blobs BlobOpener, opts ...ImageOption) (*Image, error) {
	rd, err := Open(r, size)
	if err != nil {
		return nil, err
	}
	return NewImage(rd, blobs, opts...)
}

// Bootstrap returns the image's bootstrap: its tree, tables and metadata.
func (img *Image) Bootstrap() *Reader { return img.boot }

// Blob returns the reader of blob i (an index into the blob table), opening
// it through the image's BlobOpener on first use. Opening loads the blob's
// chunk-info source and checks every record the bootstrap's chunk table holds
// for the blob against it; a failure is remembered.
func (img *Image) Blob(i int) (*BlobReader, error) {
	if i < 0 || i >= len(img.blobs) {
		return nil, fmt.Errorf("the bootstrap has no blob %d", i)
	}
	s := &img.blobs[i]
	s.once.Do(func() {
		e := img.boot.Blobs[i]
		if img.opener == nil {
			s.err = fmt.Errorf("blob %d (%s): no blob source given", i, e.BlobID)
			return
		}
		r, size, err := img.opener.OpenBlob(i, e)
		if err != nil {
			s.err = fmt.Errorf("opening blob %d (%s): %w", i, e.BlobID, err)
			return
		}
		if c, ok := r.(io.Closer); ok {
			s.closer = c
		}
		s.br, s.err = img.BlobAt(i, r, size)
	})
	return s.br, s.err
}

// BlobAt returns a reader of blob i over r (size bytes) instead of what the
// image's BlobOpener gives, for callers that fetch chunk bytes themselves
// and only need r to serve the blob's chunk-info region (a cache whose
// chunks come from a backend, then DecodeChunk). It is not remembered.
func (img *Image) BlobAt(i int, r io.ReaderAt, size int64) (*BlobReader, error) {
	if i < 0 || i >= len(img.blobs) {
		return nil, fmt.Errorf("the bootstrap has no blob %d", i)
	}
	table, err := img.boot.tableRecords()
	if err != nil {
		return nil, err
	}
	unit := img.boot.bs
	if img.boot.v5 != nil {
		unit = 0 // v5 chunk records carry no block address (§4)
	}
	return newBlobReader(i, img.boot.Blobs[i], r, size, unit, table[i], img.load)
}

// CopyFile writes the content of regular file n to w. Each chunk index of
// the file is resolved against the bootstrap's chunk table (the chunk it
// names must be recorded there, at that block address, with the bytes the
// file needs at that place) and each chunk is verified before it is
// written.
func (img *Image) CopyFile(w io.Writer, n *Node) error {
	addrs, err := img.boot.Chunks(n)
	if err != nil {
		return err
	}
	var buf []byte
	for k, a := range addrs {
		b, err := img.resolve(n, k, a)
		if err != nil {
			return fmt.Errorf("inode %d chunk %d: %w", n.Nid, k, err)
		}
		if buf, err = b.ReadChunk(a.CIIndex, buf); err != nil {
			return fmt.Errorf("inode %d chunk %d: %w", n.Nid, k, err)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// resolve opens the blob chunk index a (the k-th of file n) names and
// checks a against the chunk table.
func (img *Image) resolve(n *Node, k int, a ChunkAddr) (*BlobReader, error) {
	b, err := img.Blob(int(a.BlobIndex))
	if err != nil {
		return nil, err
	}
	cs := uint64(img.boot.ChunkSize)
	if _, err := b.Resolve(a, min(cs, n.Inode.Size-uint64(k)*cs)); err != nil {
		return nil, err
	}
	return b, nil
}

// Verify checks the whole image: every chunk index of every file against
// the bootstrap's chunk table, and every chunk the table records by reading
// it and matching its digest. Errors about a file name its path and inode.
// It returns how many chunks of each blob were read and verified.
func (img *Image) Verify(ctx context.Context) ([]int, error) {
	rd := img.boot
	done := make([]map[uint32]bool, len(rd.Blobs))
	for i := range rd.Blobs {
		if _, err := img.Blob(i); err != nil {
			return nil, err
		}
		done[i] = map[uint32]bool{}
	}
	files := map[uint64]bool{}
	var buf []byte
	err := rd.Walk(func(p string, n *Node) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !n.IsReg() || files[n.Nid] {
			return nil
		}
		files[n.Nid] = true
		addrs, err := rd.Chunks(n)
		if err != nil {
			return fmt.Errorf("%s (inode %d): %w", p, n.Nid, err)
		}
		for k, a := range addrs {
			b, err := img.resolve(n, k, a)
			if err == nil && !done[a.BlobIndex][a.CIIndex] {
				buf, err = b.ReadChunk(a.CIIndex, buf)
				done[a.BlobIndex][a.CIIndex] = err == nil
			}
			if err != nil {
				return fmt.Errorf("%s (inode %d) chunk %d: %w", p, n.Nid, k, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Records no file uses still vouch for bytes of the blob view.
	counts := make([]int, len(rd.Blobs))
	for i := range rd.Blobs {
		b, _ := img.Blob(i)
		for _, ci := range b.TableChunks() {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if !done[i][ci] {
				if buf, err = b.ReadChunk(ci, buf); err != nil {
					return nil, err
				}
			}
			counts[i]++
		}
	}
	return counts, nil
}

// Close closes the blobs the BlobOpener returned as io.Closers. Reads must
// have finished.
func (img *Image) Close() error {
	var errs []error
	for i := range img.blobs {
		if c := img.blobs[i].closer; c != nil {
			errs = append(errs, c.Close())
			img.blobs[i].closer = nil
		}
	}
	return errors.Join(errs...)
}
