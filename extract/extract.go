// Package extract materialises a RAFS image from its bootstrap and blobs:
// the blobs' uncompressed views (the device files the kernel's EROFS driver
// reads, laid out like nydusd's `<blob id>.blob.data` cache) and the file tree
// itself, with ownership, modes, times, xattrs, devices and hardlinks.
//
// Every chunk is verified against its digest before it is written.
package extract

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/rafs"
)

// Image is an opened bootstrap with the blobs it references.
type Image struct {
	Boot  *rafs.Reader
	Blobs []*rafs.BlobReader // indexed like the blob table
	files []*os.File
}

// Open opens the bootstrap at bootPath and every blob of its blob table from
// blobDir, where each blob is a file named by its blob id. With blobDir ""
// only the bootstrap is opened; reading file data then fails.
func Open(bootPath, blobDir string) (_ *Image, err error) {
	img := &Image{}
	defer func() {
		if err != nil {
			img.Close()
		}
	}()
	f, size, err := openSized(bootPath)
	if err != nil {
		return nil, fmt.Errorf("opening bootstrap: %w", err)
	}
	img.files = append(img.files, f)
	if img.Boot, err = rafs.Open(f, size); err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", bootPath, err)
	}
	if blobDir == "" {
		return img, nil
	}
	for i, e := range img.Boot.Blobs {
		bf, bsize, err := openSized(filepath.Join(blobDir, e.BlobID))
		if err != nil {
			return nil, fmt.Errorf("opening blob %d: %w", i, err)
		}
		img.files = append(img.files, bf)
		var digests map[uint32][32]byte
		if e.Features&rafs.BlobInlinedChunkDigest == 0 {
			if digests, err = img.Boot.ChunkDigests(i); err != nil {
				return nil, err
			}
		}
		br, err := rafs.OpenBlob(bf, bsize, e, digests)
		if err != nil {
			return nil, err
		}
		img.Blobs = append(img.Blobs, br)
	}
	return img, nil
}

func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Close releases the open files.
func (img *Image) Close() error {
	for _, f := range img.files {
		f.Close()
	}
	img.files = nil
	return nil
}

// BlobViews writes the uncompressed view of every blob into dir as
// `<blob id>.blob.data` and returns their paths in blob-table order: the
// order of the `device=` options of an EROFS mount of the bootstrap.
func (img *Image) BlobViews(ctx context.Context, dir string) ([]string, error) {
	if err := img.needBlobs(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, b := range img.Blobs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		final := filepath.Join(dir, b.Entry.BlobID+".blob.data")
		f, err := atomicfile.Create(dir, 0o600)
		if err != nil {
			return nil, err
		}
		if err = rafs.WriteBlobView(f, b); err == nil {
			err = f.Commit(final)
		}
		if err != nil {
			f.Abort()
			return nil, fmt.Errorf("writing view of blob %s: %w", b.Entry.BlobID, err)
		}
		paths = append(paths, final)
	}
	return paths, nil
}

func (img *Image) needBlobs() error {
	if len(img.Blobs) != len(img.Boot.Blobs) {
		return fmt.Errorf("the bootstrap references %d blob(s) but no blob directory was given (--blob-dir)", len(img.Boot.Blobs))
	}
	return nil
}
