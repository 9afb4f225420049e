package mountcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrStale is wrapped by the error for a mount point still listed in the
// mount table after its mount was stopped, or already listed before it was
// mounted: a FUSE mount whose server died, a mount left by a crashed run.
var ErrStale = errors.New("mountcheck: stale mount")

// mountinfoUnescape undoes the octal escapes of /proc/self/mountinfo.
var mountinfoUnescape = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)

// mountPoints lists the mount points of this process's mount namespace.
func mountPoints() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var points []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			points = append(points, mountinfoUnescape.Replace(f[4]))
		}
	}
	return points, nil
}

// Mounted reports whether something is mounted at path, which is made
// absolute and cleaned (symlinks are not resolved: the mount table holds
// the path mount(2) resolved).
func Mounted(path string) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	points, err := mountPoints()
	if err != nil {
		return false, err
	}
	for _, p := range points {
		if p == abs {
			return true, nil
		}
	}
	return false, nil
}

// MountsBelow lists the mount points at or below dir.
func MountsBelow(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	points, err := mountPoints()
	if err != nil {
		return nil, err
	}
	var below []string
	for _, p := range points {
		if p == abs || strings.HasPrefix(p, abs+"/") {
			below = append(below, p)
		}
	}
	return below, nil
}

// refuseMounted fails if dir is already a mount point: mounting over it
// would hide a stale mount instead of reporting it.
func refuseMounted(dir string) error {
	if dir == "" {
		return errors.New("mountcheck: no mount point")
	}
	mounted, err := Mounted(dir)
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	if mounted {
		return fmt.Errorf("%w: %s is already mounted", ErrStale, dir)
	}
	return nil
}

// detachStale lazily detaches a mount still at dir; stale reports whether
// there was one. The error is for a mount table that cannot be read or a
// mount that cannot be detached.
func detachStale(dir string) (stale bool, err error) {
	mounted, err := Mounted(dir)
	if err != nil {
		return false, fmt.Errorf("reading the mount table: %w", err)
	}
	if !mounted {
		return false, nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return true, fmt.Errorf("%w: %s still mounted; lazy unmount: %v", ErrStale, dir, err)
	}
	return true, nil
}

// unmountStale is detachStale for callers that expected nothing mounted at
// dir: a mount still there is an ErrStale error, detached or not.
func unmountStale(dir string) error {
	stale, err := detachStale(dir)
	if err == nil && stale {
		err = fmt.Errorf("%w: %s was still mounted (detached now)", ErrStale, dir)
	}
	return err
}
