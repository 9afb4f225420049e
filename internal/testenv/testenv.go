// Package testenv gives tests access to the real tools and servers that
// check our images: erofs-utils' fsck.erofs with and without extraction,
// Debian's docker-registry, and the checks that say whether this machine can
// mount at all (root, /dev/fuse, erofs in the kernel). Mounting an image and
// comparing the mount is mountcheck's job (mountcheck/mounttest in tests).
//
// Each helper takes a testing.TB, fails the test with the tool's own output,
// and cleans up after itself through t.Cleanup. A helper skips the test,
// naming the missing piece, only when the piece is truly absent: not root, a
// kernel without erofs, fsck.erofs not installed. It imports only the
// standard library.
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
