// Package backend reads byte ranges of Nydus data blobs from where they are
// stored, by blob id: a local directory (NewLocalFS), an OCI registry
// (NewRegistry, HTTP Range requests on the repository's blob URLs) or an
// S3-compatible bucket (NewS3, ranged GETs). The local directory and S3 also
// take blobs (Pusher), for convert and build in storage-backend mode
// (docs/storage-backends.md).
//
// It knows nothing of RAFS: callers (blobcache) decide which ranges to read and
// verify what comes back. Every implementation is safe for concurrent use.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/nydus-go/nydusify/internal/atomicfile"
)

// Backend reads ranges of blobs named by their id (the hex sha256 of the
// blob, as bootstraps record it).
type Backend interface {
	// ReadAt reads len(p) bytes of blob blobID starting at off, with the
	// semantics of io.ReaderAt: a short read comes with a non-nil error,
	// io.EOF when the blob ends first.
	ReadAt(ctx context.Context, blobID string, p []byte, off int64) (int, error)
	// Size returns the size of blob blobID in bytes.
	Size(ctx context.Context, blobID string) (int64, error)
}

// Pusher stores blobs, and the bootstraps of build --backend-push, where a
// Backend of the same place reads them.
type Pusher interface {
	// PushBlob stores the file at path as blob blobID. A blob already there
	// with the same size is kept (Skipped) unless force is set.
	PushBlob(ctx context.Context, blobID, path string, force bool) (PushResult, error)
	// PushMeta stores the file at path as the bootstrap called name,
	// replacing any bootstrap of that name.
	PushMeta(ctx context.Context, name, path string) (PushResult, error)
}

// PushResult says where a pushed file went.
type PushResult struct {
	Location string `json:"location"` // s3://bucket/key, or the file's path
	Size     int64  `json:"size"`
	Skipped  bool   `json:"skipped,omitempty"` // already there; nothing was sent
}

// checkID refuses blob ids that could escape a directory or a URL path.
func checkID(blobID string) error {
	if blobID == "" || blobID == "." || blobID == ".." || strings.ContainsAny(blobID, "/\\:?#") {
		return fmt.Errorf("invalid blob id %q", blobID)
	}
	return nil
}

// LocalFS reads blobs stored as files named by their blob id in one
// directory, keeping each blob open once read.
type LocalFS struct {
	dir string

	mu    sync.Mutex // guards files
	files map[string]*os.File
}

var (
	_ Backend = (*LocalFS)(nil)
	_ Pusher  = (*LocalFS)(nil)
)

// NewLocalFS returns a backend over the blob files in dir. Nothing is opened
// until a blob is read.
func NewLocalFS(dir string) *LocalFS {
	return &LocalFS{dir: dir, files: map[string]*os.File{}}
}

func (l *LocalFS) open(blobID string) (*os.File, error) {
	if err := checkID(blobID); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files == nil {
		return nil, errors.New("backend: localfs is closed")
	}
	if f, ok := l.files[blobID]; ok {
		return f, nil
	}
	f, err := os.Open(filepath.Join(l.dir, blobID))
	if err != nil {
		return nil, fmt.Errorf("opening blob %s: %w", blobID, err)
	}
	l.files[blobID] = f
	return f, nil
}

// ReadAt implements Backend.
func (l *LocalFS) ReadAt(ctx context.Context, blobID string, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := l.open(blobID)
	if err != nil {
		return 0, err
	}
	n, err := f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("reading blob %s at %d+%d: %w", blobID, off, len(p), err)
	}
	return n, err
}

// Size implements Backend.
func (l *LocalFS) Size(ctx context.Context, blobID string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := l.open(blobID)
	if err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", blobID, err)
	}
	return st.Size(), nil
}

// Close closes the open blob files; later reads fail.
func (l *LocalFS) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.files {
		f.Close()
	}
	l.files = nil
	return nil
}

// PushBlob implements Pusher: the file at path is copied to the blob's
// file in the directory, atomically (a reader sees the whole blob or none).
func (l *LocalFS) PushBlob(ctx context.Context, blobID, path string, force bool) (PushResult, error) {
	return l.push(ctx, blobID, path, force)
}

// PushMeta implements Pusher: the bootstrap becomes the file name in the
// directory.
func (l *LocalFS) PushMeta(ctx context.Context, name, path string) (PushResult, error) {
	return l.push(ctx, name, path, true)
}

func (l *LocalFS) push(ctx context.Context, name, path string, force bool) (PushResult, error) {
	if err := checkID(name); err != nil {
		return PushResult{}, err
	}
	src, err := os.Open(path)
	if err != nil {
		return PushResult{}, err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return PushResult{}, err
	}
	dst := filepath.Join(l.dir, name)
	res := PushResult{Location: dst, Size: st.Size()}
	if !force {
		if have, err := os.Stat(dst); err == nil && have.Mode().IsRegular() && have.Size() == st.Size() {
			res.Skipped = true
			return res, nil
		}
	}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return res, err
	}
	err = atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, ctxReader{ctx, src})
		return err
	})
	if err != nil {
		return res, fmt.Errorf("storing %s in %s: %w", name, l.dir, err)
	}
	return res, nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// String names the backend: "localfs:" and its directory.
func (l *LocalFS) String() string { return "localfs:" + l.dir }

// PushFiles stores the blob files of one image (blob id to path) and then
// its bootstrap (metaPath, stored as metaName; skipped when metaName is
// ""), the bootstrap last so that whoever finds it finds its blobs too.
// Blobs already there are kept unless force.
func PushFiles(ctx context.Context, p Pusher, blobs map[string]string, metaName, metaPath string, force bool) ([]PushResult, error) {
	ids := make([]string, 0, len(blobs))
	for id := range blobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []PushResult
	for _, id := range ids {
		r, err := p.PushBlob(ctx, id, blobs[id], force)
		if err != nil {
			return out, fmt.Errorf("pushing blob %s: %w", id, err)
		}
		out = append(out, r)
	}
	if metaName != "" {
		r, err := p.PushMeta(ctx, metaName, metaPath)
		if err != nil {
			return out, fmt.Errorf("pushing bootstrap %s: %w", metaName, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// ReaderAt reads blob blobID of be as an io.ReaderAt, under ctx.
func ReaderAt(ctx context.Context, be Backend, blobID string) io.ReaderAt {
	return blobReaderAt{ctx, be, blobID}
}

type blobReaderAt struct {
	ctx context.Context
	be  Backend
	id  string
}

func (b blobReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return b.be.ReadAt(b.ctx, b.id, p, off)
}
