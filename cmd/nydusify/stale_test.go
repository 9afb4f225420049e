package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/mountcheck"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
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
		"--backend-config", `{"dir":"` + out + `"}`}
	p := mounttest.StartProcess(t, binary, mnt, args, mountcheck.ProcessOptions{JSON: true})
	p.Signal(syscall.SIGKILL)
	p.Wait()
	if _, err := os.Stat(mnt); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("after SIGKILL, stat %s = %v; want ENOTCONN (a dead FUSE mount)", mnt, err)
	}

	var logged bytes.Buffer
	p2 := mounttest.StartProcess(t, binary, mnt, args, mountcheck.ProcessOptions{JSON: true, Log: &logged, AllowMounted: true})
	mounttest.RequireSame(t, src, mnt, cmpOpts)
	stop(t, p2)
	if !strings.Contains(logged.String(), "dead FUSE mount") {
		t.Errorf("second mount did not say it detached the dead one; its output:\n%s", logged.String())
	}
}
