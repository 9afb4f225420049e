package extract

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/rafs"
)

// TreeOptions tune Tree.
type TreeOptions struct {
	// Owner restores uid/gid; set it when running as root.
	Owner bool
}

// Tree writes the image's file tree into dst, which must not exist or be
// empty: contents (holes kept sparse), modes, owners (opts.Owner), mtimes,
// xattrs, symlinks, devices, fifos and hardlinks. The tree is extracted
// beside dst and renamed into place only when complete.
func (img *Image) Tree(ctx context.Context, dst string, opts TreeOptions) (err error) {
	if err := img.needBlobs(); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dst); err == nil && len(ents) > 0 {
		return fmt.Errorf("destination %s is not empty", dst)
	}
	parent := filepath.Dir(filepath.Clean(dst))
	undo, err := mkdirAll(parent)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()
	tmp, err := os.MkdirTemp(parent, ".nydusify-unpack-*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := img.extractTree(ctx, tmp, opts); err != nil {
		return err
	}
	// rename(2) replaces an empty directory.
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("placing the extracted tree: %w", err)
	}
	return nil
}

func (img *Image) extractTree(ctx context.Context, dst string, opts TreeOptions) error {
	rd := img.Boot
	links := map[uint64]string{} // nid of a regular file → first path extracted
	type dirMeta struct {
		path string
		node *rafs.Node
	}
	var dirs []dirMeta
	err := rd.Walk(func(p string, n *rafs.Node) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		full := filepath.Join(dst, filepath.FromSlash(p))
		if n.IsDir() {
			if p != "/" {
				if err := os.Mkdir(full, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, dirMeta{full, n})
			return nil
		}
		if n.IsReg() {
			if first, ok := links[n.Nid]; ok {
				return os.Link(first, full)
			}
			links[n.Nid] = full
		}
		if err := img.create(full, n); err != nil {
			return fmt.Errorf("extracting %s: %w", p, err)
		}
		return setMeta(full, n, opts)
	})
	if err != nil {
		return err
	}
	// Directories last, deepest first, so creating children does not disturb
	// their mtimes and restrictive modes do not block extraction.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setMeta(dirs[i].path, dirs[i].node, opts); err != nil {
			return err
		}
	}
	return nil
}

func (img *Image) create(full string, n *rafs.Node) error {
	mode := uint32(n.Inode.Mode)
	switch n.Type() {
	case rafs.ModeReg:
		f, err := os.OpenFile(full, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		sw := &sparseWriter{f: f}
		err = img.RAFS.CopyFile(sw, n)
		if err == nil {
			err = f.Truncate(int64(n.Inode.Size))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case rafs.ModeLnk:
		target, err := img.Boot.Readlink(n)
		if err != nil {
			return err
		}
		return os.Symlink(target, full)
	case rafs.ModeChr, rafs.ModeBlk:
		major, minor := rafs.DecodeRdev(n.Inode.U)
		return unix.Mknod(full, mode, int(unix.Mkdev(major, minor)))
	case rafs.ModeFifo:
		return unix.Mkfifo(full, mode&0o7777)
	case rafs.ModeSock:
		return unix.Mknod(full, mode, 0)
	}
	return fmt.Errorf("unknown file type %#o", n.Type())
}

// setMeta applies owner, xattrs, mode and mtime, in that order: chown clears
// setuid bits and security.capability, and only utimes fixes the mtime.
func setMeta(full string, n *rafs.Node, opts TreeOptions) error {
	if opts.Owner {
		if err := os.Lchown(full, int(n.Inode.UID), int(n.Inode.GID)); err != nil {
			return err
		}
	}
	for _, x := range n.Xattrs {
		if err := unix.Lsetxattr(full, x.Name, x.Value, 0); err != nil {
			return &os.PathError{Op: "setxattr " + x.Name, Path: full, Err: err}
		}
	}
	if n.Type() != rafs.ModeLnk {
		if err := unix.Chmod(full, uint32(n.Inode.Mode)&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: full, Err: err}
		}
	}
	ts := unix.Timespec{Sec: int64(n.Inode.Mtime), Nsec: int64(n.Inode.MtimeNsec)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, full, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: full, Err: err}
	}
	return nil
}

// sparseWriter writes sequentially but seeks over all-zero blocks, leaving
// holes; the caller truncates the file to its final size.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	// Write each run of non-zero blocks with one call.
	for start := 0; start < len(p); {
		end := min(start+rafs.BlockSize, len(p))
		if allZero(p[start:end]) {
			start = end
			continue
		}
		for end < len(p) && !allZero(p[end:min(end+rafs.BlockSize, len(p))]) {
			end = min(end+rafs.BlockSize, len(p))
		}
		if _, err := w.f.WriteAt(p[start:end], w.off+int64(start)); err != nil {
			return start, err
		}
		start = end
	}
	w.off += int64(len(p))
	return len(p), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

var _ io.Writer = (*sparseWriter)(nil)
