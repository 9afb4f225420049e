// Package rafsfs serves a RAFS v6 image as a read-only FUSE filesystem: the
// metadata comes from a rafs.Reader over the bootstrap, file data from one
// blobcache.Cache per blob of the bootstrap's blob table, fetched lazily.
//
// Nothing is walked at mount time: directories are read when looked up or
// listed, and a regular file's chunk indexes when it is first read. Inode
// numbers are the bootstrap's nids, so hardlinks share one inode. Every error
// from the image or the cache is logged with its cause and returned to the
// kernel as EIO; a chunk that fails its digest check is never served.
// It imports go-fuse, rafs and blobcache.
package rafsfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/rafs"
)

// Options configure Mount. The zero value mounts for root only, logs
// nothing and caches entries and attributes for DefaultTimeout.
type Options struct {
	// Logger receives the cause of every EIO as a warning, and go-fuse's
	// own messages. Nil discards (see internal/logs).
	Logger logrus.FieldLogger
	// AllowOther lets users other than the mounting one access the mount;
	// the kernel then checks permissions (default_permissions).
	AllowOther bool
	// Timeout is how long the kernel may cache entries and attributes; the
	// image never changes, so long is fine. 0 means DefaultTimeout.
	Timeout time.Duration
	// Debug logs every FUSE request to Logger.
	Debug bool
	// HideXattrs serves no extended attributes, as nydusd does unless its
	// configuration sets enable_xattr.
	HideXattrs bool
	// VerifyMetadata checks each inode of a RAFS v5 bootstrap against its
	// digest (rafs.Reader.VerifyDigest) when it is first looked up, the
	// root at mount: reaching a path checks every directory on the way, so
	// the whole chain from the root digest. A mismatch is logged with the
	// path and answered with EIO. A v6 bootstrap, whose inodes carry no
	// digests, is refused.
	VerifyMetadata bool
}

// DefaultTimeout is the entry and attribute timeout when Options.Timeout is 0.
const DefaultTimeout = time.Hour

// fsys is the state shared by every node of one mount.
type fsys struct {
	rd         *rafs.Reader
	caches     []*blobcache.Cache
	logger     logrus.FieldLogger
	hideXattrs bool
	verify     bool
}

// node is one inode of the image. Fields after n are filled lazily.
type node struct {
	fs.Inode
	fsys *fsys
	n    *rafs.Node

	once   sync.Once // loads ents or chunks
	err    error
	ents   map[string]rafs.DirEntry // directories
	list   []rafs.DirEntry          // directories, on-disk order, with . and ..
	chunks []rafs.ChunkAddr         // regular files
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeFlusher        = (*node)(nil)
	_ fs.NodeReader         = (*node)(nil)
	_ fs.NodeGetxattrer     = (*node)(nil)
	_ fs.NodeListxattrer    = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
)

// Mount validates rd and caches (one per blob, in blob-table order), mounts
// the image read-only at mountpoint with mount(2) directly (root needed, no
// fusermount), and returns once the mount is usable. The caller serves until
// it calls Unmount on the returned server (or the mount is unmounted
// externally; Wait returns then).
func Mount(mountpoint string, rd *rafs.Reader, caches []*blobcache.Cache, opts Options) (*fuse.Server, error) {
	root, err := newRoot(rd, caches, opts)
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	mopts := fuse.MountOptions{
		DirectMount:       true,
		DirectMountStrict: true, // no fusermount fallback: its errors only confuse
		FsName:            "nydusify",
		Name:              "rafs",
		Options:           []string{"ro"},
		// Read-only at the mount level too, with fusermount's defaults.
		DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		// READ requests of up to 1 MiB, a chunk's default size.
		MaxWrite:     1 << 20,
		AllowOther:   opts.AllowOther,
		Debug:        opts.Debug,
		Logger:       logs.Std(root.fsys.logger),
		MaxReadAhead: 1 << 20,
	}
	if opts.AllowOther {
		mopts.Options = append(mopts.Options, "default_permissions")
	}
	srv, err := fs.Mount(mountpoint, root, &fs.Options{
		MountOptions:    mopts,
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		NullPermissions: true,
		Logger:          logs.Std(root.fsys.logger),
		RootStableAttr:  &fs.StableAttr{Mode: syscall.S_IFDIR, Ino: root.n.Nid},
	})
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("mounting %s: %w (FUSE mounts call mount(2) directly and need root)", mountpoint, err)
	}
	if err != nil {
		return nil, fmt.Errorf("mounting %s: %w", mountpoint, err)
	}
	return srv, nil
}

func newRoot(rd *rafs.Reader, caches []*blobcache.Cache, opts Options) (*node, error) {
	if len(caches) != len(rd.Blobs) {
		return nil, fmt.Errorf("the bootstrap names %d blob(s), %d cache(s) given", len(rd.Blobs), len(caches))
	}
	for i, c := range caches {
		if c == nil || c.Blob().Entry.BlobID != rd.Blobs[i].BlobID {
			return nil, fmt.Errorf("cache %d is not for blob %s", i, rd.Blobs[i].BlobID)
		}
	}
	rn, err := rd.Root()
	if err != nil {
		return nil, fmt.Errorf("reading the root directory: %w", err)
	}
	if opts.VerifyMetadata {
		if err := rd.VerifyDigest(rn); err != nil {
			return nil, fmt.Errorf("verifying metadata: %w", err)
		}
	}
	return &node{fsys: &fsys{rd: rd, caches: caches, logger: logs.Or(opts.Logger), hideXattrs: opts.HideXattrs,
		verify: opts.VerifyMetadata}, n: rn}, nil
}

// eio logs what failed and returns EIO.
func (n *node) eio(op string, err error) syscall.Errno {
	n.fsys.logger.Warnf("rafsfs: %s of inode %d: %v", op, n.n.Nid, err)
	return syscall.EIO
}

func (n *node) loadDir() error {
	n.once.Do(func() {
		ents, err := n.fsys.rd.ReadDir(n.n)
		if err != nil {
			n.err = err
			return
		}
		n.ents = make(map[string]rafs.DirEntry, len(ents))
		for _, e := range ents {
			if e.Name != "." && e.Name != ".." {
				n.ents[e.Name] = e
			}
			// "." and ".." are listed (as on the kernel's EROFS mount) but
			// never looked up: the kernel resolves them itself.
			n.list = append(n.list, e)
		}
	})
	return n.err
}

func (n *node) loadChunks() error {
	n.once.Do(func() { n.chunks, n.err = n.fsys.rd.Chunks(n.n) })
	return n.err
}

// Lookup implements fs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if err := n.loadDir(); err != nil {
		return nil, n.eio("reading directory", err)
	}
	e, ok := n.ents[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	cn, err := n.fsys.rd.Node(e.Nid)
	if err != nil {
		return nil, n.eio("looking up "+name, err)
	}
	if n.fsys.verify {
		if err := n.fsys.rd.VerifyDigest(cn); err != nil {
			return nil, n.eio("looking up "+name, err)
		}
	}
	fillAttr(cn, &out.Attr)
	child := &node{fsys: n.fsys, n: cn}
	return n.NewInode(ctx, child, fs.StableAttr{Mode: uint32(cn.Inode.Mode) & syscall.S_IFMT, Ino: cn.Nid}), 0
}

// OpendirHandle implements fs.NodeOpendirHandler: the listing, with
// FOPEN_CACHE_DIR so the kernel keeps it and later listings of the same
// directory cost no READDIR.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if err := n.loadDir(); err != nil {
		return nil, 0, n.eio("reading directory", err)
	}
	out := make([]fuse.DirEntry, len(n.list))
	for i, e := range n.list {
		out[i] = fuse.DirEntry{Name: e.Name, Ino: e.Nid, Mode: fileTypeMode(e.FileType)}
	}
	return fs.NewListDirStream(out), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

func fileTypeMode(ft uint8) uint32 {
	switch ft {
	case rafs.FTReg:
		return syscall.S_IFREG
	case rafs.FTDir:
		return syscall.S_IFDIR
	case rafs.FTChr:
		return syscall.S_IFCHR
	case rafs.FTBlk:
		return syscall.S_IFBLK
	case rafs.FTFifo:
		return syscall.S_IFIFO
	case rafs.FTSock:
		return syscall.S_IFSOCK
	case rafs.FTSymlink:
		return syscall.S_IFLNK
	}
	return 0
}

func fillAttr(rn *rafs.Node, a *fuse.Attr) {
	ino := &rn.Inode
	a.Ino = rn.Nid
	a.Mode = uint32(ino.Mode)
	a.Size = ino.Size
	// 512-byte units of the size rounded up to whole blocks, as the
	// kernel's EROFS driver reports for the same inode.
	a.Blocks = (ino.Size + rafs.BlockSize - 1) / rafs.BlockSize * (rafs.BlockSize / 512)
	a.Blksize = rafs.BlockSize
	a.Nlink = ino.Nlink
	a.Uid, a.Gid = ino.UID, ino.GID
	a.Mtime, a.Mtimensec = ino.Mtime, ino.MtimeNsec
	a.Atime, a.Atimensec = ino.Mtime, ino.MtimeNsec
	a.Ctime, a.Ctimensec = ino.Mtime, ino.MtimeNsec
	if t := uint32(ino.Mode) & rafs.ModeFmt; t == rafs.ModeChr || t == rafs.ModeBlk {
		a.Rdev = ino.U // already in the kernel's new_encode_dev form (§1.9)
	}
}

// Getattr implements fs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(n.n, &out.Attr)
	return 0
}

// Readlink implements fs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := n.fsys.rd.Readlink(n.n)
	if err != nil {
		return nil, n.eio("readlink", err)
	}
	return []byte(t), 0
}

// Open implements fs.NodeOpener by declining: ENOSYS tells the kernel
// (FUSE_NO_OPEN_SUPPORT) to stop sending OPEN and RELEASE and to keep file
// pages cached across opens, which suits an image that never changes. The
// mount is read-only, so the kernel refuses opens for writing itself.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.ENOSYS
}

// Flush implements fs.NodeFlusher by declining: ENOSYS stops the FLUSH the
// kernel would otherwise send on every close.
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// Read implements fs.NodeReader: file chunk k covers [k*chunkSize,
// (k+1)*chunkSize) and is read from its blob's cache.
func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if err := n.loadChunks(); err != nil {
		return nil, n.eio("reading chunk indexes", err)
	}
	size := int64(n.n.Inode.Size)
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), size)
	cs := int64(n.fsys.rd.ChunkSize)
	pos := off
	for pos < end {
		k := pos / cs
		if k >= int64(len(n.chunks)) {
			return nil, n.eio("read", fmt.Errorf("offset %d beyond its %d chunk(s)", pos, len(n.chunks)))
		}
		a := n.chunks[k]
		c := n.fsys.caches[a.BlobIndex]
		if _, err := c.Blob().Resolve(a, uint64(min(cs, size-k*cs))); err != nil {
			return nil, n.eio("read", fmt.Errorf("chunk %d: %w", k, err))
		}
		stop := min(end, (k+1)*cs)
		if _, err := c.ReadChunkAt(ctx, a.CIIndex, dest[pos-off:stop-off], pos-k*cs); err != nil {
			return nil, n.eio("read", err)
		}
		pos = stop
	}
	return fuse.ReadResultData(dest[:end-off]), 0
}

// Listxattr implements fs.NodeListxattrer. With xattrs hidden it answers
// ENOSYS, so the kernel stops asking (callers see EOPNOTSUPP).
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.fsys.hideXattrs {
		return 0, syscall.ENOSYS
	}
	var names []byte
	for _, x := range n.n.Xattrs {
		names = append(append(names, x.Name...), 0)
	}
	if len(dest) == 0 {
		return uint32(len(names)), 0
	}
	if len(dest) < len(names) {
		return uint32(len(names)), syscall.ERANGE
	}
	return uint32(copy(dest, names)), 0
}

// Getxattr implements fs.NodeGetxattrer; like Listxattr, ENOSYS when
// xattrs are hidden.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.fsys.hideXattrs {
		return 0, syscall.ENOSYS
	}
	for _, x := range n.n.Xattrs {
		if x.Name != attr {
			continue
		}
		if len(dest) == 0 {
			return uint32(len(x.Value)), 0
		}
		if len(dest) < len(x.Value) {
			return uint32(len(x.Value)), syscall.ERANGE
		}
		return uint32(copy(dest, x.Value)), 0
	}
	return 0, syscall.ENODATA
}

// Statfs implements fs.NodeStatfser: all blocks used, counted as the
// kernel's EROFS driver counts them: the superblock's block count (itself
// the sum of the device slots') plus every device slot's again
// (docs/rafs-format.md §1.2, §1.4).
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	rd := n.fsys.rd
	blocks := uint64(rd.Super.Blocks)
	for _, d := range rd.Devices {
		blocks += uint64(d.Blocks)
	}
	*out = fuse.StatfsOut{Blocks: blocks, Files: rd.Super.Inos, Bsize: uint32(rd.BlockSize()),
		Frsize: uint32(rd.BlockSize()), NameLen: rafs.MaxNameLen}
	return 0
}
