//go:build zlibcheck && cgo

package zran

// A replica of how nydusd decodes one context, on the system zlib, for the
// zlibcheck test (go test -tags zlibcheck ./zran; needs cgo and zlib's
// headers, Debian zlib1g-dev). It follows docs/zran.md ("member ends"):
// raw inflate primed with the pending bits and the window, exactly in_len
// bytes in, out_len bytes out; at a member end it skips the 8-byte trailer,
// parses the next header in gzip mode and goes on raw, even when all the
// output is already there.

/*
#cgo LDFLAGS: -lz
#include <zlib.h>
#include <string.h>

static int nydus_decode(const unsigned char *in, unsigned in_len, int bits, unsigned char byte,
		const unsigned char *dict, unsigned dict_len, unsigned char *out, unsigned out_len) {
	static const unsigned char none[1];
	unsigned char discard[32768];
	z_stream s;
	int rc, ret;
	unsigned left = out_len, got;

	memset(&s, 0, sizeof s);
	if (inflateInit2(&s, -15) != Z_OK)
		return -100;
	if (bits && inflatePrime(&s, bits, byte >> (8 - bits)) != Z_OK) {
		rc = -101;
		goto done;
	}
	if (inflateSetDictionary(&s, dict_len ? dict : none, dict_len) != Z_OK) {
		rc = -102;
		goto done;
	}
	s.next_in = (Bytef *)in;
	s.avail_in = in_len;
	for (;;) {
		s.next_out = out + (out_len - left);
		s.avail_out = left;
		got = s.avail_out;
		ret = inflate(&s, Z_NO_FLUSH);
		got -= s.avail_out;
		left -= got;
		if (ret == Z_OK) {
			rc = (unsigned)(s.next_out - out) == out_len ? 0 : -103;
			goto done;
		}
		if (ret != Z_STREAM_END) {
			rc = ret < 0 ? ret : -106;
			goto done;
		}
		if (s.avail_in < 8) {
			rc = -104; // no complete gzip trailer
			goto done;
		}
		s.next_in += 8;
		s.avail_in -= 8;
		inflateReset2(&s, 31);
		for (;;) {
			s.next_out = discard;
			s.avail_out = sizeof discard;
			ret = inflate(&s, Z_BLOCK);
			if (ret == Z_OK && (s.data_type & 0x80) == 0)
				continue;
			if (ret != Z_OK) {
				rc = -105;
				goto done;
			}
			inflateReset2(&s, -15);
			break;
		}
	}
done:
	inflateEnd(&s);
	return rc;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// zlibDecodeContext decodes a context as nydusd does and returns its output.
func zlibDecodeContext(c Context, window, input []byte) ([]byte, error) {
	out := make([]byte, c.OutLen+1)
	in := append(input[:len(input):len(input)], 0) // never empty, for the pointer
	win := append(window[:len(window):len(window)], 0)
	rc := C.nydus_decode((*C.uchar)(unsafe.Pointer(&in[0])), C.uint(len(input)), C.int(c.Bits), C.uchar(c.PrevByte),
		(*C.uchar)(unsafe.Pointer(&win[0])), C.uint(len(window)), (*C.uchar)(unsafe.Pointer(&out[0])), C.uint(c.OutLen))
	if rc != 0 {
		return nil, fmt.Errorf("zlib replica of nydusd's decoder: code %d", int(rc))
	}
	return out[:c.OutLen], nil
}
