package mountcheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/imagemount"
)

// ErrUnsupported is wrapped by the errors of mounters that cannot work on
// this machine or as this user; the message names the missing piece.
var ErrUnsupported = errors.New("mountcheck: cannot mount here")

// Mount is a mounted filesystem under check. Close unmounts it; it is not
// safe for concurrent Close calls with other use, but Close may be called
// more than once.
type Mount struct {
	dir     string
	what    string // "FUSE mount", "kernel EROFS mount", for errors
	image   *imagemount.Mount
	unmount func() error

	closeOnce sync.Once
	closeErr  error
}

// Dir is the mount point.
func (m *Mount) Dir() string { return m.dir }

// Image is the in-process mount behind a FUSE Mount, for what it reports
// (Info, Prefetched); nil for the other kinds.
func (m *Mount) Image() *imagemount.Mount { return m.image }

// Close unmounts, then requires that the mount point no longer shows in
// /proc/self/mountinfo; one that still does is detached lazily and reported
// as a stale mount. Later calls return the first call's result.
func (m *Mount) Close() error {
	m.closeOnce.Do(func() {
		err := m.unmount()
		if serr := unmountStale(m.dir); serr != nil {
			err = errors.Join(err, fmt.Errorf("%s on %s: %w", m.what, m.dir, serr))
		}
		m.closeErr = err
	})
	return m.closeErr
}

// FUSE mounts the image opts describe with imagemount at opts.MountPath, in
// this process, and returns once it is usable. Chunks are fetched, verified
// and cached as `nydusify mount` does; the causes of EIO go to opts.Logger.
func FUSE(ctx context.Context, opts imagemount.Options) (*Mount, error) {
	if err := FUSEAvailable(); err != nil {
		return nil, err
	}
	if err := refuseMounted(opts.MountPath); err != nil {
		return nil, err
	}
	im, err := imagemount.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Mount{dir: opts.MountPath, what: "FUSE mount", image: im, unmount: im.Close}, nil
}

// FUSEAvailable says why FUSE cannot mount in this process, if it cannot:
// rafsfs calls mount(2) itself, which needs root and /dev/fuse.
func FUSEAvailable() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%w: FUSE needs root for mount(2): running as uid %d", ErrUnsupported, uid)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: no /dev/fuse: %v", ErrUnsupported, err)
	}
	return nil
}

// EROFS mounts the RAFS v6 (EROFS) image file read-only at dir with the
// kernel's erofs driver. devices are the image's extra devices (the blob
// views of a chunked image) in blob-table order. The image and every device
// must be regular files: the mount is file-backed, without loop devices, and
// the kernel refuses to mix files and block devices. Relative paths are made
// absolute before they reach mount(2).
//
// A chunked image mounted without its devices is not refused by the kernel:
// it reads its chunks from the image itself ("flat device" mode) and returns
// wrong bytes or EIO, so give every device.
//
// Not being root, a kernel without erofs, and one that cannot back erofs by
// a regular file (no CONFIG_EROFS_FS_BACKED_BY_FILE) are ErrUnsupported; any
// other failure carries the tail of the kernel log.
func EROFS(dir, image string, devices []string) (*Mount, error) {
	if uid := os.Geteuid(); uid != 0 {
		return nil, fmt.Errorf("%w: needs root for mount(2): running as uid %d", ErrUnsupported, uid)
	}
	src, err := absRegular(image)
	if err != nil {
		return nil, err
	}
	var opts []string
	for _, d := range devices {
		p, err := absRegular(d)
		if err != nil {
			return nil, err
		}
		if strings.Contains(p, ",") {
			return nil, fmt.Errorf("mounting erofs %s: device path %q contains a comma, which mount options cannot carry", src, p)
		}
		opts = append(opts, "device="+p)
	}
	if err := refuseMounted(dir); err != nil {
		return nil, err
	}
	data := strings.Join(opts, ",")
	if err := unix.Mount(src, dir, "erofs", unix.MS_RDONLY, data); err != nil {
		switch {
		case errors.Is(err, unix.ENODEV):
			return nil, fmt.Errorf("%w: kernel has no erofs filesystem: mount %s: %v", ErrUnsupported, src, err)
		case errors.Is(err, unix.ENOTBLK):
			return nil, fmt.Errorf("%w: kernel erofs cannot mount regular files (needs CONFIG_EROFS_FS_BACKED_BY_FILE): mount %s: %v",
				ErrUnsupported, src, err)
		}
		return nil, fmt.Errorf("mounting erofs %s on %s with %q: %w\nkernel log tail:\n%s", src, dir, data, err, dmesgTail(20))
	}
	return &Mount{dir: dir, what: "kernel EROFS mount", unmount: func() error {
		if err := unix.Unmount(dir, 0); err != nil {
			// Busy: detach now, the kernel finishes once the last user
			// is gone, and nothing shows as mounted meanwhile.
			if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmounting %s: %w (lazy unmount: %v)", dir, err, derr)
			}
		}
		return nil
	}}, nil
}

// Adopt takes charge of a filesystem the caller mounted at dir some other
// way: Close calls unmount, then applies the stale-mount rule.
func Adopt(dir string, unmount func() error) *Mount {
	return &Mount{dir: dir, what: "mount", unmount: unmount}
}

// absRegular returns path made absolute, or an error unless it names a
// regular file.
func absRegular(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", path, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("checking erofs image or device: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("erofs image or device %s is %v, not a regular file", p, fi.Mode().Type())
	}
	return p, nil
}

// dmesgTail returns the last n lines of the kernel log, or why it could not
// be read: the kernel says there why a mount was refused.
func dmesgTail(n int) string {
	out, err := exec.Command("dmesg").Output()
	if err != nil {
		return "(dmesg: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
