// Package testenv gives tests access to the real kernel and tools that check
// RAFS v6 (EROFS) images: a kernel EROFS mount of an image file and its blob
// devices, and erofs-utils' fsck.erofs with and without extraction.
//
// Each helper takes a testing.TB, fails the test with the tool's own output
// (and the kernel log for a failed mount), and cleans up after itself through
// t.Cleanup. A helper skips the test, naming the missing piece, only when the
// piece is truly absent: not root, a kernel without erofs, fsck.erofs not
// installed. It imports only the standard library and golang.org/x/sys/unix.
package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips the test unless it runs with euid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for mount(2)")
	}
}

// RequireFUSE skips the test unless it runs as root with /dev/fuse: our
// FUSE mounts call mount(2) directly, without fusermount.
func RequireFUSE(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// RequireEROFS skips the test unless it runs as root on a kernel that lists
// erofs in /proc/filesystems.
func RequireEROFS(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	ok, err := kernelHasEROFS()
	if err != nil {
		t.Fatalf("checking kernel filesystems: %v", err)
	}
	if !ok {
		t.Skip("kernel has no erofs filesystem (not listed in /proc/filesystems)")
	}
}

func kernelHasEROFS() (bool, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == "erofs" {
			return true, nil
		}
	}
	return false, sc.Err()
}

// MountEROFS mounts image read-only with the kernel's erofs driver and
// returns the mount point, a fresh directory under t.TempDir(). devices are
// the image's extra devices (the blobs of a chunked image) in device-table
// order. The image and every device must be regular files: the mount is
// file-backed (no loop devices), and the kernel refuses to mix files and block
// devices. Paths are made absolute before they reach mount(2).
//
// It skips the test unless running as root on a kernel with erofs, and fails
// it with the mount error and the tail of the kernel log if the mount fails.
// A cleanup unmounts (lazily, with MNT_DETACH, if a plain unmount fails)
// before the mount point is removed.
func MountEROFS(t testing.TB, image string, devices []string) string {
	t.Helper()
	RequireEROFS(t)
	src := absRegular(t, image)
	var opts []string
	for _, d := range devices {
		p := absRegular(t, d)
		if strings.Contains(p, ",") {
			t.Fatalf("mounting erofs %s: device path %q contains a comma, which mount options cannot carry", src, p)
		}
		opts = append(opts, "device="+p)
	}
	data := strings.Join(opts, ",")
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatalf("creating mount point: %v", err)
	}
	if err := unix.Mount(src, mnt, "erofs", unix.MS_RDONLY, data); err != nil {
		if errors.Is(err, unix.ENOTBLK) {
			t.Skipf("kernel erofs cannot mount regular files (needs CONFIG_EROFS_FS_BACKED_BY_FILE): mount %s: %v", src, err)
		}
		t.Fatalf("mounting erofs %s on %s with %q: %v\nkernel log tail:\n%s", src, mnt, data, err, dmesgTail(20))
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err == nil {
			return
		} else if derr := unix.Unmount(mnt, unix.MNT_DETACH); derr != nil {
			t.Errorf("unmounting %s: %v; lazy unmount: %v", mnt, err, derr)
		}
	})
	return mnt
}

// absRegular returns path made absolute, failing the test unless it names a
// regular file.
func absRegular(t testing.TB, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("resolving %s: %v", path, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("checking erofs image or device: %v", err)
	}
	if !fi.Mode().IsRegular() {
		t.Fatalf("erofs image or device %s is %v, not a regular file", p, fi.Mode().Type())
	}
	return p
}

// dmesgTail returns the last n lines of the kernel log, or why it could not
// be read.
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

// FsckEROFS runs fsck.erofs on image with one --device per entry of devices
// and fails the test if it exits non-zero or prints an "<E>" line:
// erofs-utils 1.5 reports some corruption (a bad superblock checksum) only
// as a message and still exits 0. It skips the test if fsck.erofs is not on
// PATH.
func FsckEROFS(t testing.TB, image string, devices []string) {
	t.Helper()
	runFsck(t, image, devices)
}

// FsckExtract runs fsck.erofs --extract on image into a fresh directory
// under t.TempDir() and returns that directory, under the same failure and
// skip rules as FsckEROFS. erofs-utils 1.5 writes hardlinks as separate files,
// writes holes as zeros, does not extract xattrs and drops the setuid and
// setgid bits, so compare its output with that in mind.
func FsckExtract(t testing.TB, image string, devices []string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "extract")
	runFsck(t, image, devices, "--extract="+dir)
	return dir
}

func runFsck(t testing.TB, image string, devices []string, extra ...string) {
	t.Helper()
	fsck, err := exec.LookPath("fsck.erofs")
	if err != nil {
		t.Skipf("fsck.erofs not on PATH (install erofs-utils): %v", err)
	}
	var args []string
	for _, d := range devices {
		args = append(args, "--device="+d)
	}
	args = append(args, extra...)
	args = append(args, image)
	cmd := exec.CommandContext(t.Context(), fsck, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	if bytes.Contains(out, []byte("<E>")) {
		t.Fatalf("%s: exit status 0 but reported errors:\n%s", cmd, out)
	}
}

// GoRoot returns the root of the Go installation that the go command on
// PATH uses (`go env GOROOT`), a large real tree for tests and benchmarks
// to read. runtime.GOROOT would name the tree the binary was built from,
// which a copied binary may not have.
func GoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	root := strings.TrimSpace(string(out))
	if root == "" {
		return "", errors.New("go env GOROOT: empty")
	}
	return root, nil
}
