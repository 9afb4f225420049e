package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/rafsbuild"
)

// inLimitedChild reruns the calling test in a child process whose address
// space is capped at limit bytes and reports whether the caller is that
// child (and should run the test body). An allocation sized from a hostile
// header then fails the child quickly instead of exhausting the machine,
// and the parent fails with the child's output.
func inLimitedChild(t *testing.T, limit uint64) bool {
	t.Helper()
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

// buildMeasured converts one layer and returns its error and how many bytes
// the heap allocated meanwhile.
func buildMeasured(t *testing.T, data []byte, opts rafsbuild.Options) (error, uint64) {
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
	return err, after.TotalAlloc - before.TotalAlloc
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
		err, alloc := buildMeasured(t, c.data, rafsbuild.Options{ChunkSize: c.chunkSize})
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
