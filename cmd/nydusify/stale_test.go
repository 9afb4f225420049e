package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
)

// TestMountAfterKill: a mount process killed with SIGKILL leaves a dead
// FUSE mount (ENOTCONN on every access); the next mount at the same path
// detaches it by itself, says so, and serves the image.
func TestMountAfterKill(t *testing.T) {
	testenv.RequireFUSE(t)
	dir := t.TempDir()
	src, out, mnt := filepath.Join(dir, "src"), filepath.Join(dir, "out"), filepath.Join(dir, "mnt")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, "build", "--source-dir", src, "--output-dir", out, "--name", "img"); r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	os.Mkdir(mnt, 0o755)
	args := []string{"--bootstrap", filepath.Join(out, "img.meta"), "--backend-type", "localfs",
		"--backend-config", `{"dir":"` + out + `"}`, "--mount-path", mnt}
	p, _ := startMount(t, args...)
	p.cmd.Process.Kill()
	p.cmd.Wait()
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if _, err := os.Stat(mnt); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("after SIGKILL, stat %s = %v; want ENOTCONN (a dead FUSE mount)", mnt, err)
	}

	p2, _ := startMount(t, args...)
	if !strings.Contains(p2.stderr.String(), "dead FUSE mount") {
		t.Errorf("second mount did not say it detached the dead one; stderr:\n%s", p2.stderr)
	}
	diffs, err := treecmp.Compare(src, mnt, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	p2.stop(t, mnt)
}
