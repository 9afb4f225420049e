package retry

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Reader returns a reader over the stream open returns that survives the
// stream failing midway: on a Retryable read error it opens the stream again
// (after the policy's backoff), reads past the bytes already delivered,
// checks that they hash the same as the first time, and goes on from there,
// at most Attempts times in all. The caller sees one uninterrupted stream, or
// an error naming op and the last cause; a stream whose first bytes changed
// between attempts is an error too, never a splice of two contents. An error
// from open itself is not retried: the request is the transport's to retry.
// Closing the reader closes the current stream.
func (p Policy) Reader(ctx context.Context, op string, open func() (io.ReadCloser, error)) io.ReadCloser {
	return &resuming{ctx: ctx, p: p, op: op, open: open, h: sha256.New(), fresh: true}
}

type resuming struct {
	ctx      context.Context
	p        Policy
	op       string
	open     func() (io.ReadCloser, error)
	rc       io.ReadCloser
	fresh    bool      // rc is nil because nothing was opened yet
	n        int64     // bytes delivered
	h        hash.Hash // sha256 of the bytes delivered
	failures int
	err      error // sticky
}

func (r *resuming) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for {
		if r.rc == nil {
			if err := r.reopen(); err != nil {
				r.err = err
				return 0, err
			}
		}
		n, err := r.rc.Read(b)
		r.h.Write(b[:n])
		r.n += int64(n)
		if err == nil || err == io.EOF || !Retryable(err) || r.ctx.Err() != nil {
			if err != nil && err != io.EOF && r.failures > 0 {
				err = fmt.Errorf("%s (after %d failed attempts): %w", r.op, r.failures, err)
			}
			if err != nil {
				r.err = err
			}
			return n, err
		}
		r.failures++
		r.rc.Close()
		r.rc = nil
		if r.failures >= r.p.attempts() {
			r.err = &Error{Op: r.op, Attempts: r.failures, Err: err}
			return n, r.err
		}
		if serr := r.sleep(); serr != nil {
			r.err = fmt.Errorf("%s: %w (last failure: %v)", r.op, serr, err)
			return n, r.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *resuming) sleep() error {
	t := time.NewTimer(r.p.wait(r.failures))
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return context.Cause(r.ctx)
	case <-t.C:
		return nil
	}
}

// reopen opens the stream and skips the bytes already delivered, checking
// them. A failure while skipping counts as a failed attempt.
func (r *resuming) reopen() error {
	for {
		rc, err := r.open()
		if err != nil {
			if !r.fresh {
				err = fmt.Errorf("%s: opening again after %d failures: %w", r.op, r.failures, err)
			}
			return err
		}
		if r.fresh {
			r.fresh = false
			r.rc = rc
			return nil
		}
		again := sha256.New()
		_, err = io.CopyN(again, rc, r.n)
		if err == nil {
			if string(again.Sum(nil)) != string(r.h.Sum(nil)) {
				rc.Close()
				return fmt.Errorf("%s: the first %d bytes differ from the previous attempt's", r.op, r.n)
			}
			r.rc = rc
			return nil
		}
		rc.Close()
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if !Retryable(err) || r.ctx.Err() != nil {
			return fmt.Errorf("%s: %w", r.op, err)
		}
		r.failures++
		if r.failures >= r.p.attempts() {
			return &Error{Op: r.op, Attempts: r.failures, Err: err}
		}
		if serr := r.sleep(); serr != nil {
			return fmt.Errorf("%s: %w (last failure: %v)", r.op, serr, err)
		}
	}
}

func (r *resuming) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	r.err = errors.New("read after close")
	return err
}
