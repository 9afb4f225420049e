package tarstream

import (
	"bytes"
	"crypto/rand"
	"io"
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

// FuzzOpen feeds arbitrary bytes as a layer: errors, never panics.
func FuzzOpen(f *testing.F) {
	f.Add(compressed(f, "gzip", []byte("hello")))
	f.Add(compressed(f, "zstd", []byte("hello")))
	f.Add([]byte("plain tar bytes"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, err := Open(bytes.NewReader(data))
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(rc, 64<<20))
		rc.Close()
	})
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
}
