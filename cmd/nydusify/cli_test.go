package main

import (
	"archive/tar"
	"bytes"
	bin "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/rafs"
)

var binary string

// TestMain builds the real binary once; the tests run it as a user would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nydusify-bin-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755) // TestUnreadableFile runs it as another user
	binary = filepath.Join(dir, "nydusify")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build does
	if out, err := build.CombinedOutput(); err != nil {
		panic("building nydusify: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
	maxRSSKiB      int64
}

func run(t *testing.T, cred *syscall.Credential, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if cmd.ProcessState == nil {
		t.Fatalf("running nydusify %v: %v", args, err)
	}
	r.code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSSKiB = ru.Maxrss
	}
	return r
}

// TestBuildInspectUnpack runs the user's path: build, inspect (verifying
// every chunk), unpack, and compares the unpacked tree with the source.
func TestBuildInspectUnpack(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, nil, "build", "--source-dir", src, "--output-dir", out, "--name", "app", "--compressor", "lz4_block", "--json")
	if r.code != 0 {
		t.Fatalf("build failed: %s", r.stderr)
	}
	var rep struct {
		Bootstrap string   `json:"bootstrap"`
		Blobs     []string `json:"blobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Bootstrap != "app.meta" || len(rep.Blobs) != 1 {
		t.Fatalf("build --json printed %q (%v)", r.stdout, err)
	}
	for _, f := range []string{"app.meta", rep.Blobs[0], "output.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	boot := filepath.Join(out, "app.meta")
	r = run(t, nil, "inspect", boot, "--blob-dir", out, "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"verified_chunks"`) || !strings.Contains(r.stdout, "/links/long") {
		t.Fatalf("inspect: code %d stderr %s", r.code, r.stderr)
	}
	dst := filepath.Join(t.TempDir(), "unpacked")
	if r = run(t, nil, "unpack", boot, "--blob-dir", out, "--output", dst); r.code != 0 {
		t.Fatalf("unpack: %s", r.stderr)
	}
	diffs, err := treecmp.Compare(src, dst, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	// A flipped byte in the blob's chunk data is caught by unpack and inspect.
	blob := filepath.Join(out, rep.Blobs[0])
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[100] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r = run(t, nil, "inspect", boot, "--blob-dir", out); r.code == 0 || !strings.Contains(r.stderr, "corrupt") {
		t.Errorf("inspect of a corrupted blob: code %d stderr %q", r.code, r.stderr)
	}
	dst2 := filepath.Join(t.TempDir(), "unpacked")
	if r = run(t, nil, "unpack", boot, "--blob-dir", out, "--output", dst2); r.code == 0 || !strings.Contains(r.stderr, "corrupt") {
		t.Errorf("unpack of a corrupted blob: code %d stderr %q", r.code, r.stderr)
	}
	if ents, err := os.ReadDir(filepath.Dir(dst2)); err != nil || len(ents) != 0 {
		t.Errorf("failed unpack left %d entries behind (%v)", len(ents), err)
	}
}

// TestBadInput: every bad input exits non-zero with a message saying what is
// wrong, and leaves nothing behind.
func TestBadInput(t *testing.T) {
	good := t.TempDir()
	if err := os.WriteFile(filepath.Join(good, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	withSocket := t.TempDir()
	if err := fstree.MakeSocket(filepath.Join(withSocket, "sock")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, src string
		extra     []string
		want      string
	}{
		{"missing source", filepath.Join(good, "absent"), nil, "no such file or directory"},
		{"source is a file", filepath.Join(good, "f"), nil, "not a directory"},
		{"chunk size not a power of two", good, []string{"--chunk-size", "0x3000"}, "invalid chunk size"},
		{"chunk size too large", good, []string{"--chunk-size", "0x2000000"}, "invalid chunk size"},
		{"chunk size garbage", good, []string{"--chunk-size", "big"}, `--chunk-size: invalid chunk size "big"`},
		{"fs version 4", good, []string{"--fs-version", "4"}, `--fs-version "4": want 6`},
		{"unknown compressor", good, []string{"--compressor", "gzip"}, "unknown compressor"},
		{"socket", withSocket, nil, "socket"},
	}
	inSource := filepath.Join(good, "out")
	r := run(t, nil, "build", "--source-dir", good, "--output-dir", inSource)
	if r.code == 0 || !strings.Contains(r.stderr, "inside the source directory") {
		t.Errorf("output inside the source: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(inSource); !os.IsNotExist(err) {
		t.Errorf("output directory inside the source was created (%v)", err)
	}
	t.Run("output holds an image", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		if r := run(t, nil, "build", "--source-dir", good, "--output-dir", out); r.code != 0 {
			t.Fatalf("first build: exit %d, %s", r.code, r.stderr)
		}
		before, _ := os.ReadDir(out)
		r := run(t, nil, "build", "--source-dir", good, "--output-dir", out, "--name", "second")
		if r.code == 0 || !strings.Contains(r.stderr, "is not empty") {
			t.Errorf("second build into %s: exit %d, stderr %q; want a refusal", out, r.code, r.stderr)
		}
		if after, _ := os.ReadDir(out); len(after) != len(before) {
			t.Errorf("output directory went from %d to %d entries", len(before), len(after))
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			r := run(t, nil, append([]string{"build", "--source-dir", c.src, "--output-dir", out}, c.extra...)...)
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want failure mentioning %q", r.code, r.stderr, c.want)
			}
			if strings.Contains(r.stderr, "panic") {
				t.Errorf("panicked: %s", r.stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output directory left behind (%v)", err)
			}
		})
	}
}

// TestUnreadableFile runs the build as an unprivileged user over a tree with
// an unreadable file: the error names the file and the existing output
// directory is left as it was.
func TestUnreadableFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the build as another user")
	}
	// t.TempDir's parents are private to root; the build runs as nobody.
	base, err := os.MkdirTemp("", "nydusify-unreadable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	src, out := filepath.Join(base, "src"), filepath.Join(base, "out")
	for _, d := range []string{src, out} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o777)
	}
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("readable"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "secret"), []byte("no"), 0o600); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	r := run(t, nobody, "build", "--source-dir", src, "--output-dir", out)
	if r.code == 0 || !strings.Contains(r.stderr, "secret") || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("output directory holds %d entries after a failed build", len(ents))
	}
}

// TestMemoryBounded: a 2 GiB file of distinct chunks does not raise the
// builder's peak RSS beyond what a tiny tree needs plus a small margin:
// memory is bounded by chunk size × queue depth, not by file size.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and hashes a 2 GiB file; skipped with -short")
	}
	small := t.TempDir()
	if err := os.WriteFile(filepath.Join(small, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := t.TempDir()
	f, err := os.Create(filepath.Join(big, "big"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 2 << 30
	// A sparse file whose every chunk differs (a counter at its start), so
	// nothing deduplicates and every chunk flows through the pipeline.
	for off := int64(0); off < size; off += rafs.DefaultChunkSize {
		if _, err := f.WriteAt([]byte(strconv.FormatInt(off, 10)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	base := run(t, nil, "build", "--source-dir", small, "--output-dir", filepath.Join(t.TempDir(), "o"))
	r := run(t, nil, "build", "--source-dir", big, "--output-dir", filepath.Join(t.TempDir(), "o"), "--json")
	if base.code != 0 || r.code != 0 {
		t.Fatalf("builds failed: %s %s", base.stderr, r.stderr)
	}
	if !strings.Contains(r.stdout, `"chunk_count": 2048`) {
		t.Fatalf("expected 2048 distinct chunks:\n%s", r.stdout)
	}
	t.Logf("peak RSS: tiny tree %d MiB, 2 GiB file %d MiB", base.maxRSSKiB>>10, r.maxRSSKiB>>10)
	if r.maxRSSKiB > base.maxRSSKiB+64<<10 {
		t.Errorf("peak RSS %d MiB for a 2 GiB file, %d MiB for a tiny tree", r.maxRSSKiB>>10, base.maxRSSKiB>>10)
	}
}

// TestConvertCLI converts an OCI layout into another layout and writes
// --output-json; bad references and flags fail clearly.
func TestConvertCLI(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("world"))
	tw.Close()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "src"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	r := run(t, nil, "convert", "--source", "oci:"+filepath.Join(dir, "src")+":v1", "--target", "oci:"+filepath.Join(dir, "dst")+":v1-nydus", "--output-json", report)
	if r.code != 0 {
		t.Fatalf("convert: %s", r.stderr)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Digest    string `json:"target_digest"`
		Platforms []struct {
			Layers []struct {
				BlobDigest string `json:"blob_digest"`
			} `json:"layers"`
		} `json:"platforms"`
	}
	if err := json.Unmarshal(data, &rep); err != nil || rep.Digest == "" || len(rep.Platforms) != 1 || len(rep.Platforms[0].Layers) != 1 {
		t.Errorf("report %s (%v)", data, err)
	}
	// check: the converted image equals its source, and differs from another.
	src, dst := "oci:"+filepath.Join(dir, "src")+":v1", "oci:"+filepath.Join(dir, "dst")+":v1-nydus"
	if r := run(t, nil, "check", "--target", dst, "--source", src, "--output-json", filepath.Join(dir, "check.json")); r.code != 0 {
		t.Errorf("check of a good image: %s", r.stderr)
	}
	var other bytes.Buffer
	tw = tar.NewWriter(&other)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o600, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("WORLD"))
	tw.Close()
	img2, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), static.NewLayer(other.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img2, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v2"})); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "check", "--target", dst, "--source", "oci:"+filepath.Join(dir, "src")+":v2")
	if r.code == 0 || !strings.Contains(r.stdout, "/hello: mode: want 0600, got 0644") || !strings.Contains(r.stdout, "/hello: content") {
		t.Errorf("check against a different source: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"convert", "--source", "oci:" + filepath.Join(dir, "missing") + ":v1", "--target", "oci:" + filepath.Join(dir, "x")}, "missing"},
		{[]string{"convert", "--source", "oci:" + filepath.Join(dir, "src") + ":v1"}, "target"},
		{[]string{"convert", "--source", "a/b:c", "--target", "d/e:f", "--target-suffix", "-n"}, "not both"},
		{[]string{"convert", "--source", "oci:" + filepath.Join(dir, "src") + ":v1", "--target-suffix", "-n"}, "suffix"},
		{[]string{"convert", "--source", "oci:" + filepath.Join(dir, "src") + ":v1", "--target", "oci:" + filepath.Join(dir, "y"), "--fs-chunk-size", "3"}, "invalid chunk size"},
	} {
		r := run(t, nil, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "panic") {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// TestConvertMemoryBounded: converting a 1 GiB layer does not hold it in
// memory; peak RSS stays near that of converting a tiny one.
func TestConvertMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and converts a 1 GiB layer; skipped with -short")
	}
	dir := t.TempDir()
	layoutOf := func(name string, size int64) string {
		// An uncompressed tar of one sparse file whose chunks all differ.
		tarPath := filepath.Join(dir, name+".tar")
		f, err := os.Create(tarPath)
		if err != nil {
			t.Fatal(err)
		}
		tw := tar.NewWriter(f)
		if err := tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Flush()
		start, _ := f.Seek(0, io.SeekCurrent)
		for off := int64(0); off < size; off += 1 << 20 {
			if _, err := f.WriteAt([]byte(strconv.FormatInt(off, 10)), start+off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(start + size + 1024); err != nil { // data, then two zero end blocks
			t.Fatal(err)
		}
		f.Close()
		layer, err := tarball.LayerFromFile(tarPath, tarball.WithMediaType(types.OCIUncompressedLayer))
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
		if err != nil {
			t.Fatal(err)
		}
		lp, err := layout.Write(filepath.Join(dir, name), empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
			t.Fatal(err)
		}
		os.Remove(tarPath)
		return "oci:" + filepath.Join(dir, name) + ":v1"
	}
	small := run(t, nil, "convert", "--source", layoutOf("small", 1<<20), "--target", "oci:"+filepath.Join(dir, "out-small"))
	big := run(t, nil, "convert", "--source", layoutOf("big", 1<<30), "--target", "oci:"+filepath.Join(dir, "out-big"))
	if small.code != 0 || big.code != 0 {
		t.Fatalf("convert failed: %s %s", small.stderr, big.stderr)
	}
	t.Logf("peak RSS converting: 1 MiB layer %d MiB, 1 GiB layer %d MiB", small.maxRSSKiB>>10, big.maxRSSKiB>>10)
	if big.maxRSSKiB > small.maxRSSKiB+96<<10 {
		t.Errorf("peak RSS %d MiB for a 1 GiB layer, %d MiB for a 1 MiB one", big.maxRSSKiB>>10, small.maxRSSKiB>>10)
	}
}

// TestInspectVerifyV5 runs inspect --verify on upstream's v5 fixture: the
// root digest printed and written to --output-json is the one stored in the
// fixture's root record, every digest verifies; with one chunk digest of
// /normal-file-test/holefiles/head-hole-2 changed, the file and every
// directory above it are named and the exit status is 1. A v6 bootstrap
// has no Merkle tree: --verify says so.
func TestInspectVerifyV5(t *testing.T) {
	boot, err := os.ReadFile("../../testdata/nydus/repeatable/sha256-nocompress-repeatable")
	if err != nil {
		t.Fatal(err)
	}
	// The root is inode 1; the inode table at 8192 holds offsets / 8, and a
	// record opens with its digest (docs/rafs-format.md §4).
	rootOff := int(bin.LittleEndian.Uint32(boot[8192:])) * 8
	rootDigest := hex.EncodeToString(boot[rootOff : rootOff+32])
	dir := t.TempDir()
	report := filepath.Join(dir, "report.json")
	r := run(t, nil, "inspect", "../../testdata/nydus/repeatable/sha256-nocompress-repeatable", "--verify", "--output-json", report)
	if r.code != 0 || !strings.Contains(r.stdout, "root digest: "+rootDigest) || !strings.Contains(r.stdout, "54 inodes recomputed with sha256") ||
		!strings.Contains(r.stdout, "every digest verifies") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var rep struct {
		Version    int    `json:"rafs_version"`
		RootDigest string `json:"root_digest"`
		Merkle     struct {
			ComputedRoot string `json:"computed_root_digest"`
			Mismatches   []struct {
				Path string `json:"path"`
			} `json:"mismatches"`
		} `json:"merkle"`
	}
	data, err := os.ReadFile(report)
	if err != nil || json.Unmarshal(data, &rep) != nil || rep.Version != 5 || rep.RootDigest != rootDigest || rep.Merkle.ComputedRoot != rootDigest {
		t.Fatalf("--output-json: %s (%v)", data, err)
	}
	// head-hole-2 is inode 40; its name (11 bytes) pads to 16, then come
	// its 80-byte chunk records, a digest first.
	off := int(bin.LittleEndian.Uint32(boot[8192+39*4:]))*8 + 128 + 16 + 80 + 3
	boot[off] ^= 1
	tampered := filepath.Join(dir, "tampered")
	if err := os.WriteFile(tampered, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "inspect", tampered, "--verify", "--json", "--output-json", report)
	data, _ = os.ReadFile(report)
	rep.Merkle.Mismatches = nil
	if r.code != 1 || !strings.Contains(r.stderr, "4 inode(s)") || json.Unmarshal(data, &rep) != nil {
		t.Fatalf("tampered: exit %d\n%s", r.code, r.stderr)
	}
	var paths []string
	for _, m := range rep.Merkle.Mismatches {
		paths = append(paths, m.Path)
	}
	if want := []string{"/normal-file-test/holefiles/head-hole-2", "/normal-file-test/holefiles", "/normal-file-test", "/"}; !slices.Equal(paths, want) {
		t.Errorf("mismatches %q, want %q", paths, want)
	}
	r = run(t, nil, "inspect", "../../testdata/nydus/bootstrap/rafs-v6-2.2.boot", "--verify")
	if r.code != 1 || !strings.Contains(r.stderr, "has no Merkle tree") {
		t.Errorf("v6 --verify: exit %d, %s", r.code, r.stderr)
	}
}
