// Package verify checks content against its expected digest and size while it is being read,
// so that verification costs no second pass over the data. Readers that see wrong content
// return an *Error instead of io.EOF at the end of the stream, and fail as soon as more bytes
// arrive than expected. Digests are go-containerregistry's v1.Hash, the one type the toolchain
// uses for OCI content digests; it imports nothing else of ggcr, which does no I/O in pkg/v1.
package verify

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Error reports content whose digest or size differs from what was expected.
type Error struct {
	Want, Got         v1.Hash // Got is the zero Hash when the size was already wrong
	WantSize, GotSize int64   // GotSize counts the bytes seen, at least WantSize+1 when too long
}

func (e *Error) Error() string {
	if e.GotSize != e.WantSize {
		return fmt.Sprintf("verify: %s: got %d bytes, want %d", e.Want, e.GotSize, e.WantSize)
	}
	return fmt.Sprintf("verify: got digest %s, want %s", e.Got, e.Want)
}

// hashers are the algorithms OCI descriptors use (image-spec's registered ones).
var hashers = map[string]func() hash.Hash{
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// newHasher returns a hash for want, after checking want is well formed: a known algorithm
// and as many lowercase hex digits as its sum has.
func newHasher(want v1.Hash) (hash.Hash, error) {
	newHash, ok := hashers[want.Algorithm]
	if !ok {
		return nil, fmt.Errorf("unsupported digest algorithm %q", want.Algorithm)
	}
	h := newHash()
	if len(want.Hex) != 2*h.Size() || strings.Trim(want.Hex, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%s is not %d lowercase hex digits", want.Hex, 2*h.Size())
	}
	return h, nil
}

// ReadCloser returns a reader over rc that hashes what passes through it. Reading past size
// bytes, or reaching EOF with a different size or digest, fails with an *Error; only content
// that matches ends in io.EOF. Closing it closes rc. The algorithm of want must be sha256,
// sha384 or sha512; otherwise, or when want is malformed, ReadCloser closes rc and returns
// an error.
func ReadCloser(rc io.ReadCloser, size int64, want v1.Hash) (io.ReadCloser, error) {
	h, err := newHasher(want)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("verify: expected digest %q: %w", want, err)
	}
	if size < 0 {
		rc.Close()
		return nil, fmt.Errorf("verify: expected size %d of %s is negative", size, want)
	}
	return &reader{rc: rc, want: want, size: size, hash: h}, nil
}

type reader struct {
	rc   io.ReadCloser
	want v1.Hash
	size int64
	hash hash.Hash
	n    int64
	err  error // sticky: the first verification failure or read error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.rc.Read(p)
	r.n += int64(n)
	r.hash.Write(p[:n])
	switch {
	case r.n > r.size:
		// Hand out only the bytes within the expected size.
		r.err = &Error{Want: r.want, WantSize: r.size, GotSize: r.n}
		return n - int(r.n-r.size), r.err
	case err == io.EOF:
		if r.n != r.size {
			r.err = &Error{Want: r.want, WantSize: r.size, GotSize: r.n}
		} else if got := (v1.Hash{Algorithm: r.want.Algorithm, Hex: hex.EncodeToString(r.hash.Sum(nil))}); got != r.want {
			r.err = &Error{Want: r.want, Got: got, WantSize: r.size, GotSize: r.n}
		} else {
			r.err = io.EOF
		}
		return n, r.err
	case err != nil:
		r.err = err
	}
	return n, err
}

func (r *reader) Close() error { return r.rc.Close() }
