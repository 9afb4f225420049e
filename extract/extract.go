// Package extract materialises a RAFS image from its bootstrap and blobs:
// the blobs' uncompressed views (the device files the kernel's EROFS driver
// reads, laid out like nydusd's `<blob id>.blob.data` cache) and the file tree
// itself, with ownership, modes, times, xattrs, devices and hardlinks.
//
// Every chunk is verified against the bootstrap's chunk table (rafs.Image)
// before it is written.
package extract

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/rafs"
)

// Image is an opened bootstrap with the blobs it references.
type Image struct {
	// Boot is the bootstrap: tree, tables and metadata.
	Boot *rafs.Reader
	// RAFS reads the image's data, verifying every chunk against the
	// bootstrap's chunk table.
	RAFS     *rafs.Image
	hasBlobs bool
	bootFile *os.File
}

// Open opens the bootstrap at bootPath and every blob of its blob table from
// blobDir, where each blob is a file named by its blob id. Each blob's chunk
// information is loaded and checked against the bootstrap's chunk table now,
// so a missing or mismatched blob fails here. With blobDir "" only the
// bootstrap is opened; reading file data then fails.
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
	img.bootFile = f
	if img.Boot, err = rafs.Open(f, size); err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", bootPath, err)
	}
	var blobs rafs.BlobOpener
	if blobDir != "" {
		img.hasBlobs = true
		blobs = rafs.BlobOpenerFunc(func(_ int, e rafs.BlobEntry) (io.ReaderAt, int64, error) {
			return openSized(filepath.Join(blobDir, e.BlobID))
		})
	}
	if img.RAFS, err = rafs.NewImage(img.Boot, blobs); err != nil {
		return nil, err
	}
	if blobDir == "" {
		return img, nil
	}
	for i := range img.Boot.Blobs {
		if _, err := img.RAFS.Blob(i); err != nil {
			return nil, err
		}
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
	if img.RAFS != nil {
		img.RAFS.Close()
	}
	if img.bootFile != nil {
		img.bootFile.Close()
		img.bootFile = nil
	}
	return nil
}

// BlobViews writes the uncompressed view of every blob into dir as
// `<blob id>.blob.data` and returns their paths in blob-table order: the
// order of the `device=` options of an EROFS mount of the bootstrap.
// On error, the directories it created for dir are removed again (with the
// views it wrote none are left in them).
func (img *Image) BlobViews(ctx context.Context, dir string) (_ []string, err error) {
	if err := img.needBlobs(); err != nil {
		return nil, err
	}
	undo, err := mkdirAll(dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	defer func() {
		if err != nil {
			for _, p := range paths {
				os.Remove(p)
			}
			undo()
		}
	}()
	for i := range img.Boot.Blobs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := img.RAFS.Blob(i)
		if err != nil {
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

// mkdirAll is os.MkdirAll, returning a function that removes the
// directories it created, deepest first, as long as they are empty.
func mkdirAll(dir string) (undo func(), err error) {
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return func() {
		for _, d := range created {
			os.Remove(d) // fails, leaving it, when not empty
		}
	}, nil
}

func (img *Image) needBlobs() error {
	if !img.hasBlobs && len(img.Boot.Blobs) > 0 {
		return fmt.Errorf("the bootstrap references %d blob(s) but no blob directory was given (--blob-dir)", len(img.Boot.Blobs))
	}
	return nil
}
