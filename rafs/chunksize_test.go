package rafs_test

import (
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
)

func TestParseChunkSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint32
	}{
		{"0x1000", 4096},
		{"0x100000", 1 << 20},
		{"1048576", 1 << 20},
		{"0X1000000", 16 << 20},
		{"0o10000", 4096},
		{"0b1000000000000", 4096},
	} {
		got, err := rafs.ParseChunkSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseChunkSize(%q) = %#x, %v; want %#x", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", `invalid chunk size ""`},
		{"big", `invalid chunk size "big": invalid syntax`},
		{"-0x1000", `invalid chunk size "-0x1000"`},
		{"0x100000000", `invalid chunk size "0x100000000": value out of range`},
		{"0", "invalid chunk size 0x0: must be a power of two from 0x1000 to 0x1000000"},
		{"0x800", "invalid chunk size 0x800: must be a power of two"},
		{"0x3000", "invalid chunk size 0x3000: must be a power of two"},
		{"0x2000000", "invalid chunk size 0x2000000: must be a power of two"},
		{"4097", "invalid chunk size 0x1001"},
	} {
		got, err := rafs.ParseChunkSize(c.in)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ParseChunkSize(%q) = %#x, %v; want an error starting %q", c.in, got, err, c.want)
		}
	}
}

func TestCheckChunkSizeBounds(t *testing.T) {
	// Every power of two from 4 KiB to 16 MiB, nothing else near them.
	for shift := range 32 {
		cs := uint32(1) << shift
		ok := shift >= 12 && shift <= 24
		if err := rafs.CheckChunkSize(cs); (err == nil) != ok {
			t.Errorf("CheckChunkSize(%#x) = %v, want ok=%v", cs, err, ok)
		}
		if cs > 2 {
			if err := rafs.CheckChunkSize(cs + 1); err == nil {
				t.Errorf("CheckChunkSize(%#x) accepted a non-power of two", cs+1)
			}
		}
	}
}
