package tarstream

import (
	"bytes"
	stdgzip "compress/gzip"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func compressed(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch kind {
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		zw.Close()
	default:
		buf.Write(data)
	}
	return buf.Bytes()
}

func TestOpenRoundTrip(t *testing.T) {
	data := make([]byte, 5<<20+123)
	rand.Read(data[:1<<20])
	for _, kind := range []string{"gzip", "zstd", "plain"} {
		rc, err := Open(bytes.NewReader(compressed(t, kind, data)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes back (%v), want %d", kind, len(got), err, len(data))
		}
	}
}

func TestOpenCorrupt(t *testing.T) {
	data := bytes.Repeat([]byte("layer data "), 100000)
	gz := compressed(t, "gzip", data)
	gz[len(gz)-6] ^= 0xff // CRC of the trailer
	rc, err := Open(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil {
		t.Error("a gzip stream with a bad checksum read without error")
	}
	if _, err := Open(bytes.NewReader([]byte{0x1f, 0x8b, 1})); err == nil {
		t.Error("a truncated gzip header opened")
	}
}

// TestCloseEarly: closing before the end stops the read-ahead goroutine.
func TestCloseEarly(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 64<<20)
	rc, err := Open(bytes.NewReader(compressed(t, "zstd", data)))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenTruncated: a layer cut anywhere, even inside the 8-byte gzip
// trailer (CRC-32 and ISIZE) or the zstd frame checksum, must read as an
// error, never as a clean end of stream.
func TestOpenTruncated(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data[:64<<10])
	for _, kind := range []string{"gzip", "zstd"} {
		full := compressed(t, kind, data)
		for cut := 1; cut <= 16; cut++ {
			rc, err := Open(bytes.NewReader(full[:len(full)-cut]))
			if err != nil {
				continue // refused up front: fine
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err == nil {
				t.Errorf("%s missing its last %d bytes: read %d bytes without error", kind, cut, len(got))
			}
		}
	}
	// A second gzip member cut where its header's comment starts (found by
	// FuzzGzipFraming).
	gz := append(compressed(t, "gzip", data), 0x1f, 0x8b, 8, 0x10, 0, 0, 0, 0, 0, 0)
	rc, err := Open(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil {
		t.Error("a gzip layer whose second member is cut in its header read without error")
	}
}

// TestOpenZstdWindowClaim: a zstd frame header claiming a window beyond the
// reference decoder's default limit is refused before the window is
// allocated (found by FuzzOpen: 14 bytes cost 337 MiB).
func TestOpenZstdWindowClaim(t *testing.T) {
	data := []byte("(\xb5/\xfd\x04\x92C0\x00000\x920")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := readAllOpen(data)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Error("a 14-byte zstd layer read without error")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("%d MiB allocated for a 14-byte zstd layer (%v)", alloc>>20, err)
	}
}

// FuzzOpen feeds arbitrary bytes as a layer: errors, never panics; a zstd
// layer reads as zstd.Decoder.DecodeAll reads it (accepted by both or
// neither, the same bytes), a plain one as itself.
func FuzzOpen(f *testing.F) {
	f.Add(compressed(f, "gzip", []byte("hello")))
	f.Add(compressed(f, "zstd", []byte("hello")))
	f.Add(compressed(f, "zstd", bytes.Repeat([]byte("hello"), 10000)))
	f.Add([]byte("plain tar bytes"))
	smallBuffers(f)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxFuzzOutput))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readAllOpen(data)
		if errors.Is(err, errTooLong) {
			return
		}
		switch {
		case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			want, werr := dec.DecodeAll(data, nil)
			if errors.Is(werr, zstd.ErrDecoderSizeExceeded) || errors.Is(werr, zstd.ErrWindowSizeExceeded) {
				return // the reference's memory limit, not the stream's
			}
			if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(got, want) {
				t.Fatalf("Open read %d bytes (%v); DecodeAll %d bytes (%v)", len(got), err, len(want), werr)
			}
		case !bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("a plain layer read as %d bytes (%v), want itself (%d)", len(got), err, len(data))
			}
		}
	})
}

// FuzzGzipFraming: a layer starting with the gzip magic is accepted exactly
// when compress/gzip reads it to its end without error (every member's
// header, deflate data, CRC-32 and size checked; nothing but gzip members
// up to EOF), and then reads as the same bytes. One exception, where
// compress/gzip is lenient and RFC 1952 §2.3.1.2 is not: a member header
// with a reserved FLG bit set must be refused.
func FuzzGzipFraming(f *testing.F) {
	data := bytes.Repeat([]byte("gzip framing "), 5000)
	full := compressed(f, "gzip", data)
	f.Add(full)
	f.Add(full[:len(full)-4])
	f.Add(append(append([]byte{}, full...), compressed(f, "gzip", []byte("second member"))...))
	f.Add(append(append([]byte{}, full...), 0, 0, 0, 0))
	f.Add(compressed(f, "gzip", nil))
	smallBuffers(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			return
		}
		got, err := readAllOpen(data)
		if errors.Is(err, errTooLong) {
			return
		}
		var want []byte
		zr, werr := stdgzip.NewReader(bytes.NewReader(data))
		if werr == nil {
			want, werr = io.ReadAll(io.LimitReader(zr, maxFuzzOutput+1))
			if len(want) > maxFuzzOutput {
				return
			}
		}
		if err != nil && werr == nil && reservedFlagSet(data) {
			return
		}
		if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(got, want) {
			t.Fatalf("Open read %d bytes (%v); compress/gzip %d bytes (%v)", len(got), err, len(want), werr)
		}
	})
}

// reservedFlagSet reports whether a member of the gzip stream data, which
// compress/gzip reads, has one of the FLG bits 5 to 7 set in its header.
func reservedFlagSet(data []byte) bool {
	r := bytes.NewReader(data)
	for r.Len() > 0 {
		off := len(data) - r.Len()
		if r.Len() >= 4 && data[off+3]>>5 != 0 {
			return true
		}
		zr, err := stdgzip.NewReader(r)
		if err != nil {
			return false
		}
		zr.Multistream(false)
		if _, err := io.Copy(io.Discard, io.LimitReader(zr, maxFuzzOutput)); err != nil {
			return false
		}
	}
	return false
}

const maxFuzzOutput = 16 << 20

// smallBuffers makes Open buffer 4 KiB at a time, 3 buffers ahead, for the
// rest of f: much faster per input, with many more buffer boundaries.
func smallBuffers(f *testing.F) {
	size, depth := bufSize, aheadDepth
	bufSize, aheadDepth = 4096, 3
	f.Cleanup(func() { bufSize, aheadDepth = size, depth })
}

var errTooLong = errors.New("more output than the fuzz limit")

// readAllOpen reads a layer through Open to EOF, giving up past
// maxFuzzOutput bytes.
func readAllOpen(data []byte) ([]byte, error) {
	rc, err := Open(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	got, err := io.ReadAll(io.LimitReader(rc, maxFuzzOutput+1))
	if len(got) > maxFuzzOutput {
		return nil, errTooLong
	}
	return got, err
}
