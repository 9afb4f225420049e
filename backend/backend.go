// Package backend reads byte ranges of Nydus data blobs from where they are
// stored, by blob id: a local directory (NewLocalFS) or an OCI registry
// (NewRegistry, HTTP Range requests on the repository's blob URLs).
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
	"strings"
	"sync"
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

var _ Backend = (*LocalFS)(nil)

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

// String names the backend: "localfs:" and its directory.
func (l *LocalFS) String() string { return "localfs:" + l.dir }
