package checker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/internal/xattr"
	"github.com/nydus-go/nydusify/mountcheck"
)

// checkMountable says why Options.Mount cannot work in this process, if it
// cannot: rafsfs calls mount(2) itself.
func checkMountable() error {
	if err := mountcheck.FUSEAvailable(); err != nil {
		return fmt.Errorf("--mount needs root and /dev/fuse: %w", err)
	}
	return nil
}

// readMounted mounts the bootstrap at work/image.boot read-only at
// work/mnt, its chunks fetched from the blobs loadBootstrap downloaded into
// work (files named by blob id) and cached in work/cache, describes the
// mounted tree with walkMounted, and unmounts before returning, whatever
// happened (a mount left behind is an error). The error is for failures to
// mount, unmount or finish the walk; what cannot be read through the mount
// goes into unreadable.
func readMounted(ctx context.Context, work string, logger logrus.FieldLogger) (_ map[string]*file, _ map[string]string, err error) {
	mnt := filepath.Join(work, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating the mount point: %w", err)
	}
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: work}
	cfg.CacheDir = filepath.Join(work, "cache")
	m, err := mountcheck.FUSE(ctx, imagemount.Options{
		MountPath: mnt, Bootstrap: filepath.Join(work, bootstrapFile), Config: cfg, Logger: logger,
	})
	if err != nil {
		return nil, nil, err
	}
	defer func() { err = errors.Join(err, m.Close()) }()
	return walkMounted(ctx, m.Dir())
}

// walkMounted describes every path below root, a mounted image, with
// lstat(2), readlink(2), the xattr calls and read(2) only, in the shape
// readRafs gives: inode numbers stand in for nids. A path, directory listing,
// xattr, symlink target or content that cannot be read is recorded in
// unreadable and the walk goes on; the error is only the context's.
func walkMounted(ctx context.Context, root string) (map[string]*file, map[string]string, error) {
	w := &mountWalker{ctx: ctx, root: root, tree: newNydusTree(), buf: make([]byte, 1<<20)}
	err := w.visit("/")
	files, unreadable := w.tree.done()
	return files, unreadable, err
}

type mountWalker struct {
	ctx  context.Context
	root string
	tree *nydusTree
	buf  []byte // for reading contents
}

// visit describes path p (relative to the mount, "/"-rooted) and, for a
// directory, everything below it.
func (w *mountWalker) visit(p string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	abs := filepath.Join(w.root, p)
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		w.tree.cannotRead(p, "metadata", err)
		return nil
	}
	typ := st.Mode & unix.S_IFMT
	if typ == unix.S_IFREG && st.Nlink > 1 && w.tree.sameInode(p, st.Ino) {
		return nil
	}
	sec, nsec := st.Mtim.Unix()
	f := newFile(st.Mode, st.Uid, st.Gid, sec, nsec)
	if err := readXattrs(abs, f); err != nil {
		w.tree.cannotRead(p, "xattrs", err)
	}
	w.tree.files[p] = f
	switch typ {
	case unix.S_IFREG:
		f.size = uint64(st.Size)
		if digest, err := w.hash(abs); err != nil {
			w.tree.cannotRead(p, "content", err)
		} else {
			f.digest = digest
		}
	case unix.S_IFLNK:
		f.size = uint64(st.Size)
		target, err := os.Readlink(abs)
		if err != nil {
			w.tree.cannotRead(p, "symlink target", stripPath(err))
		}
		f.target = target
	case unix.S_IFCHR, unix.S_IFBLK:
		f.rdev = fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	case unix.S_IFDIR:
		ents, err := os.ReadDir(abs)
		if err != nil {
			w.tree.cannotRead(p, "directory", stripPath(err))
		}
		for _, e := range ents { // those read before an error too
			if err := w.visit(path.Join(p, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// hash returns the hex sha256 of the content of the regular file abs.
func (w *mountWalker) hash(abs string) (string, error) {
	f, err := os.Open(abs)
	if err != nil {
		return "", stripPath(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, w.buf); err != nil {
		return "", stripPath(err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// stripPath drops the mount's absolute path from err, which the problem
// already names relative to the image root: "read: input/output error".
func stripPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// readXattrs adds the xattrs of abs, not following a symlink, to f. The
// kernel refuses user.* xattrs on anything but regular files and
// directories, as it would on any mount of the image: they read as absent.
func readXattrs(abs string, f *file) error {
	xs, err := xattr.Read(abs)
	if err != nil {
		return err
	}
	for name, v := range xs {
		f.setXattr(name, v)
	}
	return nil
}
