package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestMountCmd runs the mount command in-process until "mounted at", compares
// the mount with the source tree, then cancels the command's context (what
// SIGINT does) and checks that it unmounts and returns nil.
func TestMountCmd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for mount(2) (DirectMount without fusermount)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir := t.TempDir()
	src, out, mnt := filepath.Join(dir, "src"), filepath.Join(dir, "out"), filepath.Join(dir, "mnt")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rafsbuild.BuildDir(context.Background(), src, out, "img", rafsbuild.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	cmd := newMountCmd()
	cmd.SetOut(pw)
	cmd.SetArgs([]string{"--bootstrap", filepath.Join(out, "img.meta"), "--backend-type", "localfs",
		"--backend-config", fmt.Sprintf(`{"dir":%q}`, out), "--mount-path", mnt,
		"--cache-dir", filepath.Join(dir, "cache")})
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("mount printed %q then %v; command: %v", line, err, <-done)
	}
	if want := "mounted at " + mnt + "\n"; line != want {
		t.Fatalf("mount printed %q, want %q", line, want)
	}
	go io.Copy(io.Discard, pr)
	diffs, err := treecmp.Compare(src, mnt, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
	if err != nil {
		t.Error(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mount returned %v after cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mount did not return within 10s of cancellation")
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), " "+mnt+" ") {
		t.Errorf("%s is still mounted", mnt)
	}
}
