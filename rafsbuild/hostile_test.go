package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// inLimitedChild reruns the calling test in a child process whose address
// space is capped at limit bytes and reports whether the caller is that
// child (and should run the test body). An allocation sized from a hostile
// header then fails the child quickly instead of exhausting the machine,
// and the parent fails with the child's output. Under the race detector,
// whose shadow memory needs terabytes of address space, the body runs in
// this process without a cap.
func inLimitedChild(t *testing.T, limit uint64) bool {
	t.Helper()
	if raceDetector {
		return true
	}
	const env = "RAFSBUILD_LIMITED_CHILD"
	if os.Getenv(env) == t.Name() {
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
			t.Fatal(err)
		}
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("in a child limited to %d MiB of address space: %v\n%s", limit>>20, err, firstLines(out, 20))
	}
	return false
}

func firstLines(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// buildMeasured converts one layer and returns how many bytes the heap
// allocated meanwhile, and the conversion's error.
func buildMeasured(t *testing.T, data []byte, opts rafsbuild.Options) (uint64, error) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "blob")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), f, opts, nil)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// claimedSize is a GNU tar whose one file claims size bytes (base-256 above
// 8 GiB) but carries only 4 KiB of them.
func claimedSize(t *testing.T, name string, size int64) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size,
		ModTime: time.Unix(1700000000, 0), Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	tw.Write(bytes.Repeat([]byte{'x'}, 4096))
	return buf.Bytes()
}

// oldGNUSparse hand-writes an old-GNU sparse entry ('S'): its real size in
// base-256, one 512-byte data fragment at offset 0, the rest a hole.
func oldGNUSparse(name string, realSize int64) []byte {
	h := make([]byte, 512)
	copy(h[0:], name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", 512)) // bytes stored in the archive
	copy(h[136:], "14712342000\x00")
	h[156] = tar.TypeGNUSparse
	copy(h[257:], "ustar  \x00")
	copy(h[386:], fmt.Sprintf("%011o\x00%011o\x00", 0, 512)) // sparse[0]: offset, length
	real := h[483:495]
	real[0] = 0x80
	for i := 11; i > 0; i, realSize = i-1, realSize>>8 {
		real[i] = byte(realSize)
	}
	copy(h[148:], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	out := append(h, bytes.Repeat([]byte{'d'}, 512)...)
	return append(out, make([]byte, 1024)...)
}

// TestLayerClaimedSizes: sizes claimed by tar headers, far beyond the bytes
// that follow, cost nothing: a claim no blob can index is refused before
// reading, a smaller one fails as a truncated layer naming the entry, and
// memory grows with what was read, not with what was claimed. Run in a
// child process with 2 GiB of address space, so the old behaviour (a slice
// sized from the claim) fails there rather than exhausting the machine.
func TestLayerClaimedSizes(t *testing.T) {
	if !inLimitedChild(t, 2<<30) {
		return
	}
	cases := []struct {
		name      string
		data      []byte
		chunkSize uint32
		want      string
	}{
		{"2^54 bytes", claimedSize(t, "huge", 1<<54), 0, "huge: 18014398509481984 bytes need"},
		{"2^62 bytes", claimedSize(t, "huger", 1<<62), 0, "huger: 4611686018427387904 bytes need"},
		{"2^35 bytes in 4 KiB chunks", claimedSize(t, "big", 1<<35), 0x1000, `layer truncated or corrupt: tar entry "big": content ends after 4096 of its 34359738368 bytes`},
		{"GNU sparse, 1 PiB", oldGNUSparse("sparse", 1<<50), 0, "sparse: 1125899906842624 bytes need"},
	}
	for _, c := range cases {
		alloc, err := buildMeasured(t, c.data, rafsbuild.Options{ChunkSize: c.chunkSize})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if alloc > 32<<20 {
			t.Errorf("%s: %d MiB allocated for a few KiB of layer", c.name, alloc>>20)
		}
		if strings.Contains(c.want, "need") && !errors.Is(err, rafsbuild.ErrUnsupported) {
			t.Errorf("%s: %v does not wrap ErrUnsupported", c.name, err)
		}
	}
}

// buildOne converts one layer tar and returns the error.
func buildOne(t *testing.T, data []byte) error {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "blob")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), f, rafsbuild.Options{}, nil)
	return err
}

// TestLayerRefusesWhatItCannotKeep: entries that used to convert into
// something else (a hardlink to a directory became an empty directory, a
// uid above 2^32-1 became root, a device number was cut to its low bits, a
// whiteout name used as a directory deleted its namesake below) are
// errors naming the entry and the value.
func TestLayerRefusesWhatItCannotKeep(t *testing.T) {
	owner := func(name string, uid, gid int) tarEnt {
		e := file(name, "setuid")
		e.mode, e.uid, e.gid = 0o4755, uid, gid
		return e
	}
	device := func(name string, major, minor int64) tarEnt {
		return tarEnt{name: name, typ: tar.TypeChar, mode: 0o600, major: major, minor: minor}
	}
	cases := []struct {
		name string
		tar  []byte
		want []string
	}{
		{"hardlink to a directory", tarOf(t, tar.FormatPAX, dir("d/"), file("d/f", "x"), link("l", "d")),
			[]string{`hardlink "l"`, `directory "d"`}},
		{"uid 2^32", tarOf(t, tar.FormatPAX, owner("suid", 1<<32, 0)), []string{`"suid"`, "uid 4294967296"}},
		{"gid 2^40", tarOf(t, tar.FormatPAX, owner("sgid", 0, 1<<40)), []string{`"sgid"`, "gid 1099511627776"}},
		{"device major 4096", tarOf(t, tar.FormatPAX, device("dev/big", 4096, 1)), []string{`"dev/big"`, "4096:1"}},
		{"device minor 2^20", tarOf(t, tar.FormatPAX, device("dev/big", 1, 1<<20)), []string{`"dev/big"`, "1:1048576"}},
		{"whiteout name as a directory", tarOf(t, tar.FormatPAX, file(".wh.keep/zz", "z")), []string{`".wh.keep/zz"`, `".wh.keep"`}},
		{"opaque marker as a directory", tarOf(t, tar.FormatPAX, file("d/.wh..wh..opq/x", "x")), []string{`".wh..wh..opq"`}},
	}
	for _, c := range cases {
		err := buildOne(t, c.tar)
		if err == nil {
			t.Errorf("%s: converted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %s", c.name, err, w)
			}
		}
	}
	// The largest values that fit are kept.
	l := buildLayers(t, t.TempDir(), rafsbuild.Options{}, tarOf(t, tar.FormatPAX,
		owner("max", 1<<32-1, 1<<32-1), device("dev/max", 4095, 1<<20-1)))
	if len(l) != 1 {
		t.Fatal("no layer")
	}
}

// TestLayerDotDotInside: ".." that stays inside the root is cleaned as
// containerd's applier cleans it ("f/../g" is "g"), for names and hardlink
// targets alike; only names that leave the root are refused.
func TestLayerDotDotInside(t *testing.T) {
	tmp := t.TempDir()
	layers := buildLayers(t, tmp, rafsbuild.Options{}, tarOf(t, tar.FormatPAX,
		file("f/../g", "g"), file("d/./e/../h", "h"), link("k", "x/../g")))
	m, err := rafsbuild.Merge(layers, rafsbuild.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := treeOf(t, tmp, m)
	want := map[string]string{"g": "f:g", "d": "d", "d/h": "f:h", "k": "f:g"}
	if mapString(got) != mapString(want) {
		t.Errorf("tree:\n%s\nwant:\n%s", mapString(got), mapString(want))
	}
	err = buildOne(t, tarOf(t, tar.FormatPAX, file("a/../../evil", "x")))
	if !errors.Is(err, rafsbuild.ErrPathEscape) || !strings.Contains(err.Error(), `"a/../../evil"`) {
		t.Errorf("escaping name: %v", err)
	}
}

// treeOf extracts a merged image whose layer blobs are in dir.
func treeOf(t *testing.T, dir string, m *rafsbuild.Merged) map[string]string {
	t.Helper()
	boot := filepath.Join(dir, "image.boot")
	if err := os.WriteFile(boot, m.Bootstrap, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := extract.Open(boot, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	dst := filepath.Join(t.TempDir(), "x")
	if err := img.Tree(context.Background(), dst, extract.TreeOptions{}); err != nil {
		t.Fatal(err)
	}
	return listTree(t, dst)
}
