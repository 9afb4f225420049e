// Package retry is the one retry policy of every network path (convert pull
// and push, mount, check): bounded attempts with exponential backoff and
// jitter, a deadline per attempt, and a stall timeout on response bodies, so
// a transient fault costs a retry, a dead or stalled server costs a bounded
// wait, and the error that finally comes back names the real cause.
//
// Two layers use it. Transport wraps an http.RoundTripper: it retries
// requests that can be replayed (GET, HEAD, and others whose body can be
// recreated) when the server is unreachable, resets the connection, or
// answers 408, 429 or 5xx, and it fails a response whose body stops moving
// for longer than Policy.Stall. Policy.Do retries a whole operation, for
// faults that surface only while a body is consumed (a truncated blob, a
// digest that does not match what a promised size delivered).
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// Policy says how often and how long to try. The zero value gives the
// defaults documented on each field; a Policy is safe for concurrent use.
type Policy struct {
	// Attempts is the number of tries in all, the first included. 0 means 4;
	// 1 disables retrying.
	Attempts int
	// Backoff is the wait after the first failure; it doubles after each
	// further one, up to MaxBackoff, with ±25% jitter. 0 means 200ms.
	Backoff time.Duration
	// MaxBackoff caps the wait between tries. 0 means 5s.
	MaxBackoff time.Duration
	// Stall fails a request whose response headers, or whose body between
	// two reads, take longer than this. 0 means 30s; negative disables it.
	Stall time.Duration
}

// Default is the policy every network path uses unless told otherwise.
var Default = Policy{}

func (p Policy) attempts() int {
	if p.Attempts <= 0 {
		return 4
	}
	return p.Attempts
}

// Tries is the number of tries p makes in all: Attempts, or its default.
func (p Policy) Tries() int { return p.attempts() }

func (p Policy) wait(failures int) time.Duration {
	d, maxD := p.Backoff, p.MaxBackoff
	if d <= 0 {
		d = 200 * time.Millisecond
	}
	if maxD <= 0 {
		maxD = 5 * time.Second
	}
	for i := 1; i < failures && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (p Policy) stall() time.Duration {
	switch {
	case p.Stall < 0:
		return 0
	case p.Stall == 0:
		return 30 * time.Second
	}
	return p.Stall
}

// Error is what Do returns when every attempt failed with a retryable error:
// the last cause, and how many attempts were made.
type Error struct {
	Op       string
	Attempts int
	Err      error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: gave up after %d attempts: %v", e.Op, e.Attempts, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Do calls fn until it succeeds, returns an error that is not Retryable, the
// attempts are used up, or ctx ends. op names the operation in the error.
// A permanent error is returned as it is.
func (p Policy) Do(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	n := p.attempts()
	var err error
	for i := 1; ; i++ {
		if err = fn(ctx); err == nil || !Retryable(err) {
			return err
		}
		if ctx.Err() != nil {
			// The caller gave up; its reason comes first, the last fault after.
			return fmt.Errorf("%s: %w (last failure: %v)", op, context.Cause(ctx), err)
		}
		if i == n {
			return &Error{Op: op, Attempts: n, Err: err}
		}
		t := time.NewTimer(p.wait(i))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last failure: %v)", op, context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// temporary marks an error as retryable.
type temporary struct{ err error }

func (t temporary) Error() string { return t.err.Error() }
func (t temporary) Unwrap() error { return t.err }

// Temporary marks err as worth retrying (for example a body that ended
// before the size its headers promised). Temporary(nil) is nil.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return temporary{err}
}

// permanent marks an error as not worth retrying.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying by Do, whatever it wraps: for
// example a request that a retrying transport already gave up on, which
// another whole attempt would only multiply. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// StatusError is an HTTP answer that Transport gave up on retrying, or that
// a caller reports with Status.
type StatusError struct {
	Code   int
	Method string
	URL    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: server answered %d %s", e.Method, e.URL, e.Code, http.StatusText(e.Code))
}

// RetryableStatus reports whether an HTTP status is worth retrying: 408,
// 429 and every 5xx but 501 (not implemented) and 505 (version).
func RetryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500 && code <= 599
}

// Retryable reports whether err is a fault that another attempt may not
// meet: marked Temporary (and not Permanent), a retryable HTTP status, a connection reset,
// refused or cut short, a timeout, or a stall. Cancellation by the caller is
// never retryable.
func Retryable(err error) bool {
	var pe permanent
	if err == nil || errors.Is(err, context.Canceled) || errors.As(err, &pe) {
		return false
	}
	var t temporary
	var se *StatusError
	var st interface{ Temporary() bool } // go-containerregistry's transport.Error
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.As(err, &t), errors.Is(err, errStalled):
		return true
	case errors.As(err, &se):
		return RetryableStatus(se.Code)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	case errors.As(err, &ue) && (errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, net.ErrClosed)):
		// The connection closed before any response came, or while the
		// request body was being sent (the transport closed it when the
		// peer reset it). Before the Temporary case: *url.Error has a
		// Temporary method, false here.
		return true
	case errors.As(err, &st):
		return st.Temporary()
	}
	return false
}
