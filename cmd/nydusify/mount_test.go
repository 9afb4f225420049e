package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/internal/treetar"
	"github.com/nydus-go/nydusify/mountcheck"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestMountCmd runs the mount command in-process until "mounted at", compares
// the mount with the source tree, then cancels the command's context (what
// SIGINT does) and checks that it unmounts and returns nil.
func TestMountCmd(t *testing.T) {
	testenv.RequireFUSE(t)
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
	mounttest.RequireSame(t, src, mnt, cmpOpts)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mount returned %v after cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mount did not return within 10s of cancellation")
	}
	if mounted, err := mountcheck.Mounted(mnt); err != nil || mounted {
		t.Errorf("%s: mounted %v (%v) after the command returned", mnt, mounted, err)
	}
}

// cmpOpts compares a mount with its source tree: a mount point's own mtime
// and directory sizes are not the image's.
var cmpOpts = treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true}

// stop stops the `nydusify mount --json` process (a clean exit, nothing
// left mounted) and requires its last event to be "unmounted".
func stop(t *testing.T, p *mountcheck.Process) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Error(err)
	}
	if ev, err := p.Next(t.Context()); err != nil || ev.Name() != "unmounted" {
		t.Errorf("event after the stop signal: %v (%v), want unmounted", ev, err)
	}
}

// TestMountRegistryTarget converts the sample tree into a real registry
// with the CLI, mounts the image by reference with prefetch, compares the
// mounted tree with the source, waits for the prefetch to finish and stops
// the mount with SIGINT.
func TestMountRegistryTarget(t *testing.T) {
	testenv.RequireFUSE(t)
	host := testenv.StartRegistry(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := fstree.Make(src, fstree.Options{Root: true}); err != nil {
		t.Fatal(err)
	}
	img, err := treetar.Image(src)
	if err != nil {
		t.Fatal(err)
	}
	srcRef, _ := name.ParseReference(host+"/sample:v1", name.Insecure)
	if err := remote.Write(srcRef, img); err != nil {
		t.Fatal(err)
	}
	target := host + "/sample:v1-nydus"
	if r := run(t, nil, "convert", "--source", srcRef.String(), "--target", target, "--plain-http", "--compressor", "lz4_block"); r.code != 0 {
		t.Fatalf("convert: %s", r.stderr)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	p := mounttest.StartProcess(t, binary, mnt, []string{"--target", target, "--plain-http", "--prefetch", "--prefetch-workers", "2"},
		mountcheck.ProcessOptions{JSON: true})
	if ready := p.Ready(); ready["mount_path"] != mnt || ready["blobs"] != 1.0 || !strings.HasPrefix(ready["backend"].(string), "registry:"+host) {
		t.Errorf("ready event %v", ready)
	}
	mounttest.RequireSame(t, src, mnt, cmpOpts)
	// convert writes the prefetch table [root], so prefetch walks every file.
	if ev, err := p.Next(t.Context()); err != nil || ev.Name() != "prefetched" || ev["error"] != nil || ev["files"].(float64) < 100 || ev["chunks"].(float64) == 0 {
		t.Errorf("event %v (%v), want prefetched of every file without error", ev, err)
	}
	stop(t, p)
}

// TestMountConfig mounts with a nydusd JSON configuration (localfs backend,
// blobcache work_dir, enable_xattr) and rejects a configuration with a key
// nydusd does not know, naming it.
func TestMountConfig(t *testing.T) {
	testenv.RequireFUSE(t)
	dir := t.TempDir()
	src, out, mnt, cache := filepath.Join(dir, "src"), filepath.Join(dir, "out"), filepath.Join(dir, "mnt"), filepath.Join(dir, "cache")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, "build", "--source-dir", src, "--output-dir", out, "--name", "img"); r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	os.Mkdir(mnt, 0o755)
	cfg := filepath.Join(dir, "nydusd.json")
	conf := fmt.Sprintf(`{"device": {"backend": {"type": "localfs", "config": {"dir": %q}},
	  "cache": {"type": "blobcache", "config": {"work_dir": %q}}},
	  "mode": "direct", "digest_validate": true, "enable_xattr": true, "iostats_files": true}`, out, cache)
	os.WriteFile(cfg, []byte(conf), 0o644)
	// Stopped with SIGINT, as a user's ^C (the registry test uses SIGTERM).
	var logged bytes.Buffer
	p := mounttest.StartProcess(t, binary, mnt, []string{"--config", cfg, "--bootstrap", filepath.Join(out, "img.meta")},
		mountcheck.ProcessOptions{JSON: true, Log: &logged, StopSignal: os.Interrupt})
	if ready := p.Ready(); ready["cache_dir"] != cache {
		t.Errorf("ready event %v, want cache %s", ready, cache)
	}
	mounttest.RequireSame(t, src, mnt, cmpOpts)
	stop(t, p)
	if !strings.Contains(logged.String(), "iostats_files: not supported, ignored") {
		t.Errorf("no note about the ignored key; output:\n%s", logged.String())
	}
	if _, err := os.Stat(filepath.Join(cache)); err != nil {
		t.Errorf("the work_dir cache was not kept: %v", err)
	}

	os.WriteFile(cfg, []byte(strings.Replace(conf, `"mode"`, `"moed"`, 1)), 0o644)
	r := run(t, nil, "mount", "--config", cfg, "--bootstrap", filepath.Join(out, "img.meta"), "--mount-path", mnt)
	if r.code == 0 || !strings.Contains(r.stderr, `unknown key(s) "moed"`) || strings.Contains(r.stderr, "panic") {
		t.Errorf("bad config: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"mount", "--bootstrap", filepath.Join(out, "img.meta")}, "--mount-path"},
		{[]string{"mount", "--mount-path", mnt}, "one of --target and --bootstrap"},
		{[]string{"mount", "--bootstrap", filepath.Join(out, "img.meta"), "--mount-path", mnt, "--platform", "linux/arm64"}, "--platform applies to --target only"},
		{[]string{"mount", "--bootstrap", filepath.Join(out, "img.meta"), "--mount-path", mnt, "--plain-http"}, "--plain-http applies to --target only"},
		{[]string{"mount", "--bootstrap", filepath.Join(out, "img.meta"), "--mount-path", mnt}, "needs a backend"},
		{[]string{"mount", "--target", "oci:" + filepath.Join(dir, "none"), "--mount-path", mnt}, "none"},
		{[]string{"mount", "--bootstrap", filepath.Join(out, "img.meta"), "--mount-path", mnt, "--backend-type", "s3", "--backend-config", "{}"}, `s3 needs "bucket_name"`},
	} {
		r := run(t, nil, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "panic") {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// TestMountNotRoot: as another user, mount fails with a message saying it
// needs root, not with fusermount's noise.
func TestMountNotRoot(t *testing.T) {
	testenv.RequireFUSE(t)
	// t.TempDir's parents are private to root; the mount runs as nobody.
	base, err := os.MkdirTemp("", "nydusify-mount-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	src, out, mnt := filepath.Join(base, "src"), filepath.Join(base, "out"), filepath.Join(base, "mnt")
	os.Mkdir(src, 0o755)
	os.Mkdir(mnt, 0o777)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	if r := run(t, nil, "build", "--source-dir", src, "--output-dir", out, "--name", "img"); r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	for _, p := range []string{base, out, mnt} {
		os.Chmod(p, 0o777)
	}
	os.Chmod(filepath.Join(out, "img.meta"), 0o644)
	r := run(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "mount", "--bootstrap", filepath.Join(out, "img.meta"),
		"--backend-config", fmt.Sprintf(`{"dir":%q}`, out), "--mount-path", mnt)
	if r.code == 0 || !strings.Contains(r.stderr, "need root") || strings.Contains(r.stderr, "fusermount") {
		t.Errorf("mount as nobody: exit %d, stderr %q", r.code, r.stderr)
	}
}
