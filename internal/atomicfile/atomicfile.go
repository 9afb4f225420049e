// Package atomicfile writes files so that a reader, or a machine restarted
// after a crash, sees either a file's old content or all of its new content,
// never a part. The data goes to a temporary file in the target's directory;
// the file is synced, renamed over the target (rename(2) is atomic within a
// file system, hence the same directory) and the directory is synced so the
// rename itself is durable. Any failure removes the temporary file and leaves
// the target untouched.
//
// [Write] and [WriteFile] do it in one call. [Create] hands out the temporary
// file for callers that learn the final name only once the data is written
// (a blob named by its digest) or that place several files together.
// It imports only the standard library.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// tempPattern names temporary files: hidden, and recognisable as ours if a
// crash leaves one behind.
const tempPattern = ".atomicfile-*.tmp"

// WriteFile writes data to path atomically and durably, with mode perm
// (not masked by the umask).
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write creates path atomically and durably, with mode perm (not masked by
// the umask), from what fill writes. If fill returns an error, nothing is
// renamed, the temporary file is removed and fill's error is returned.
func Write(path string, perm fs.FileMode, fill func(io.Writer) error) error {
	f, err := Create(filepath.Dir(path), perm)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit(path)
}

// File is a temporary file that becomes a named file at Commit, or is
// removed at Abort. Its methods are not safe for concurrent use.
type File struct {
	f    *os.File
	dir  string
	perm fs.FileMode
	done bool // committed or aborted: the temporary file is gone
}

var (
	_ io.Writer   = (*File)(nil)
	_ io.WriterAt = (*File)(nil)
)

// Create creates a temporary file in dir. perm is the mode the file has
// once committed. The caller must call Commit or Abort.
func Create(dir string, perm fs.FileMode) (*File, error) {
	if dir == "" {
		dir = "." // not os.CreateTemp's default, the system temp directory
	}
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return nil, err
	}
	return &File{f: f, dir: filepath.Clean(dir), perm: perm}, nil
}

// Write writes to the temporary file.
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, os.ErrClosed
	}
	return f.f.Write(p)
}

// WriteAt writes to the temporary file at offset off.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if f.done {
		return 0, os.ErrClosed
	}
	return f.f.WriteAt(p, off)
}

// Truncate changes the temporary file's size; growing it leaves a hole.
func (f *File) Truncate(size int64) error {
	if f.done {
		return os.ErrClosed
	}
	return f.f.Truncate(size)
}

// Name returns the temporary file's path.
func (f *File) Name() string { return f.f.Name() }

// Commit sets the file's mode, syncs it, closes it and renames it to path,
// replacing any file there, then syncs the directory. path must lie in the
// directory given to Create. On failure the temporary file is removed and
// path keeps its old content (unless only the directory sync failed: the
// rename then happened but may not survive a crash).
func (f *File) Commit(path string) (err error) {
	if f.done {
		return os.ErrClosed
	}
	defer func() {
		if err != nil {
			f.Abort()
		}
	}()
	if filepath.Dir(filepath.Clean(path)) != f.dir {
		return fmt.Errorf("atomicfile: %s is not in %s, where the temporary file is", path, f.dir)
	}
	if err := f.f.Chmod(f.perm); err != nil {
		return err
	}
	if err := f.f.Sync(); err != nil {
		return err
	}
	if err := f.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.f.Name(), path); err != nil {
		return err
	}
	f.done = true
	return syncDir(f.dir)
}

// Abort closes and removes the temporary file. It does nothing after
// Commit or a previous Abort, so it can be deferred.
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	cerr := f.f.Close()
	if err := os.Remove(f.f.Name()); err != nil {
		return err
	}
	if errors.Is(cerr, os.ErrClosed) {
		cerr = nil
	}
	return cerr
}

// syncDir makes the entries of dir, a rename into it, durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
