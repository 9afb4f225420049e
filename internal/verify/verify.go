// Package verify checks content against its expected digest and size while it is being read,
// so that verification costs no second pass over the data. Readers that see wrong content
// return an *Error instead of io.EOF at the end of the stream, and fail as soon as more bytes
// arrive than expected. It depends on go-digest only, so any layer of the toolchain can use it.
package verify

import (
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// Error reports content whose digest or size differs from what was expected.
type Error struct {
	Want, Got         digest.Digest // Got is empty when the size was already wrong
	WantSize, GotSize int64         // GotSize counts the bytes seen, at least WantSize+1 when too long
}

func (e *Error) Error() string {
	if e.GotSize != e.WantSize {
		return fmt.Sprintf("verify: %s: got %d bytes, want %d", e.Want, e.GotSize, e.WantSize)
	}
	return fmt.Sprintf("verify: got digest %s, want %s", e.Got, e.Want)
}

// ReadCloser returns a reader over rc that hashes what passes through it. Reading past size
// bytes, or reaching EOF with a different size or digest, fails with an *Error; only content
// that matches ends in io.EOF. Closing it closes rc. The algorithm of want must be available
// (sha256, sha384 or sha512); otherwise ReadCloser closes rc and returns an error.
func ReadCloser(rc io.ReadCloser, size int64, want digest.Digest) (io.ReadCloser, error) {
	if err := want.Validate(); err != nil {
		rc.Close()
		return nil, fmt.Errorf("verify: expected digest %q: %w", want, err)
	}
	if size < 0 {
		rc.Close()
		return nil, fmt.Errorf("verify: expected size %d of %s is negative", size, want)
	}
	return &reader{rc: rc, want: want, size: size, digester: want.Algorithm().Digester()}, nil
}

type reader struct {
	rc       io.ReadCloser
	want     digest.Digest
	size     int64
	digester digest.Digester
	n        int64
	err      error // sticky: the first verification failure or read error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.rc.Read(p)
	r.n += int64(n)
	r.digester.Hash().Write(p[:n])
	switch {
	case r.n > r.size:
		// Hand out only the bytes within the expected size.
		r.err = &Error{Want: r.want, WantSize: r.size, GotSize: r.n}
		return n - int(r.n-r.size), r.err
	case err == io.EOF:
		if r.n != r.size {
			r.err = &Error{Want: r.want, WantSize: r.size, GotSize: r.n}
		} else if got := r.digester.Digest(); got != r.want {
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
