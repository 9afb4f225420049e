package imagemount

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// recoverStale detaches a dead FUSE mount left at path by a mount process
// that was killed (SIGKILL, OOM): every access to such a path fails with
// ENOTCONN until it is unmounted, so a new mount there could never start.
// It reports whether it detached one.
func recoverStale(path string) (bool, error) {
	var st unix.Stat_t
	err := unix.Stat(path, &st)
	if !errors.Is(err, unix.ENOTCONN) {
		return false, nil // absent or not a directory: the mount itself says so
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return false, fmt.Errorf("%s is a FUSE mount whose server is gone, and detaching it failed: %w (try: umount -l %s)", path, err, path)
	}
	if err := unix.Stat(path, &st); err != nil {
		return true, fmt.Errorf("%s after detaching a dead FUSE mount: %w", path, err)
	}
	return true, nil
}
