package rafsbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/rafs"
)

// walkDir adds every object under root to t, parents before children. File
// contents are not read here; readDirData streams them after layout.
func walkDir(ctx context.Context, root string, t *tree) error {
	e, err := statEntry(root, "")
	if err != nil {
		return err
	}
	if e.Mode&rafs.ModeFmt != rafs.ModeDir {
		return fmt.Errorf("source %s is not a directory", root)
	}
	// Upstream ignores the root's mtime so that builds are repeatable.
	e.Mtime, e.MtimeNsec = 0, 0
	if _, err := t.add(e); err != nil {
		return err
	}
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := filepath.Join(root, rel)
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("reading directory: %w", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading directory %s: %w", dir, err)
		}
		slices.Sort(names)
		for _, name := range names {
			p := name
			if rel != "" {
				p = rel + "/" + name
			}
			e, err := statEntry(filepath.Join(root, p), p)
			if err != nil {
				return err
			}
			n, err := t.add(e)
			if err != nil {
				return err
			}
			if n.isDir() {
				if err := walk(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk("")
}

// statEntry describes the object at full (lstat: symlinks are not followed).
func statEntry(full, rel string) (Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return Entry{}, &os.PathError{Op: "lstat", Path: full, Err: err}
	}
	e := Entry{
		Path: rel, Mode: st.Mode, UID: st.Uid, GID: st.Gid,
		Mtime: st.Mtim.Sec, MtimeNsec: uint32(st.Mtim.Nsec),
	}
	switch st.Mode & rafs.ModeFmt {
	case rafs.ModeReg:
		e.Size = uint64(st.Size)
		e.LinkKey = LinkKey{Dev: st.Dev, Ino: st.Ino}
	case rafs.ModeLnk:
		target, err := os.Readlink(full)
		if err != nil {
			return Entry{}, err
		}
		e.Target = target
	case rafs.ModeChr, rafs.ModeBlk:
		e.Rdev = rafs.EncodeRdev(unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	xs, err := readXattrs(full)
	if err != nil {
		return Entry{}, err
	}
	e.Xattrs = xs
	if len(filepath.Base(full)) > rafs.MaxNameLen {
		return Entry{}, fmt.Errorf("%w: %s: file name longer than %d bytes", ErrUnsupported, full, rafs.MaxNameLen)
	}
	return e, nil
}

// readXattrs returns the extended attributes of full, sorted by name, or
// none where the file system does not support them.
func readXattrs(full string) ([]rafs.Xattr, error) {
	size, err := unix.Llistxattr(full, nil)
	for err == nil && size > 0 {
		buf := make([]byte, size)
		var n int
		n, err = unix.Llistxattr(full, buf)
		if errors.Is(err, unix.ERANGE) {
			size, err = unix.Llistxattr(full, nil)
			continue
		}
		if err != nil {
			break
		}
		var xs []rafs.Xattr
		for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
			v, err := getXattr(full, name)
			if err != nil {
				return nil, err
			}
			xs = append(xs, rafs.Xattr{Name: name, Value: v})
		}
		slices.SortFunc(xs, func(a, b rafs.Xattr) int { return strings.Compare(a.Name, b.Name) })
		return xs, nil
	}
	if err == nil || errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	return nil, &os.PathError{Op: "listxattr", Path: full, Err: err}
}

func getXattr(full, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(full, name, nil)
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: full, Err: err}
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(full, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: full, Err: err}
		}
		return buf[:n], nil
	}
}

// readDirData streams the content of every regular file into the blob, in
// visiting order, each hardlink group once.
func readDirData(ctx context.Context, root string, order []*node, b *blobWriter) error {
	for _, n := range order {
		if !n.isReg() || n.primary != nil || n.data.size == 0 {
			continue
		}
		full := filepath.Join(root, filepath.FromSlash(n.entry.Path))
		if err := readFile(ctx, full, n, b); err != nil {
			return err
		}
	}
	return nil
}

func readFile(ctx context.Context, full string, n *node, b *blobWriter) error {
	f, err := os.Open(full)
	if err != nil {
		return fmt.Errorf("reading file content: %w", err)
	}
	defer f.Close()
	if err := b.addFile(ctx, full, n.data, f); err != nil {
		if short := (*shortReadError)(nil); errors.As(err, &short) {
			return fmt.Errorf("reading %s: file shrank to %d bytes while being read (expected %d)", full, short.got, short.want)
		}
		return err
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); m > 0 {
		return fmt.Errorf("reading %s: file grew beyond %d bytes while being read", full, n.data.size)
	}
	return nil
}
