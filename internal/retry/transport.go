package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

var errStalled = errors.New("stalled: no data within the stall timeout")

// Transport returns an http.RoundTripper over base (http.DefaultTransport
// when nil) that follows p: replayable requests are retried on retryable
// faults before a response is handed back, response headers must arrive
// within p.Stall, and a body read that waits longer than p.Stall fails (and
// cancels the request) with an error Retryable reports true for. A response
// with a retryable status that is the last attempt is returned as it is, so
// the caller sees the registry's own error body.
func (p Policy) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{p: p, base: base}
}

type transport struct {
	p    Policy
	base http.RoundTripper
}

// replayable: a request can be sent again when it has no body or its body
// can be recreated. (A POST that opens an upload may then open two; the
// registry forgets the unused one.)
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := t.p.attempts()
	if !replayable(req) {
		n = 1
	}
	for i := 1; ; i++ {
		r := req
		if i > 1 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(req.Context())
			r.Body = body
		}
		resp, err := t.once(r)
		if err == nil && n > 1 {
			err = readSmallBody(req, resp)
		}
		last := i == n
		switch {
		case err == nil && (!RetryableStatus(resp.StatusCode) || last):
			return resp, nil
		case err != nil && (!Retryable(err) || last || req.Context().Err() != nil):
			if i > 1 {
				err = fmt.Errorf("%w (attempt %d of %d)", err, i, n)
			}
			return nil, err
		}
		if err == nil {
			// Drain a little so the connection can be reused, then retry.
			io.CopyN(io.Discard, resp.Body, 4<<10)
			resp.Body.Close()
		}
		tm := time.NewTimer(t.p.wait(i))
		select {
		case <-req.Context().Done():
			tm.Stop()
			if err == nil {
				err = &StatusError{Code: resp.StatusCode, Method: req.Method, URL: req.URL.Redacted()}
			}
			return nil, fmt.Errorf("%w (last failure: %v)", context.Cause(req.Context()), err)
		case <-tm.C:
		}
	}
}

// smallBody is the largest announced body that Transport reads in full
// before handing the response back (manifests, configs, indexes, tokens,
// errors), so that one cut short is retried like a reset.
const smallBody = 1 << 20

// readSmallBody replaces a small body announced by Content-Length with its
// bytes, read in full; an error reading it is the attempt's error.
func readSmallBody(req *http.Request, resp *http.Response) error {
	if resp.ContentLength <= 0 || resp.ContentLength > smallBody || req.Method == http.MethodHead {
		return nil
	}
	b := make([]byte, resp.ContentLength)
	_, err := io.ReadFull(resp.Body, b)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s %s: reading the %d-byte response body: %w", req.Method, req.URL.Redacted(), resp.ContentLength, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

// once sends one request; headers must come within the stall timeout, and
// the body is watched so that it fails when it stops moving.
func (t *transport) once(req *http.Request) (*http.Response, error) {
	stall := t.p.stall()
	if stall == 0 {
		return t.base.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	out := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		// Sending a large body takes as long as it takes; only a pause counts.
		out.Body = &sentBody{ReadCloser: req.Body, timer: timer, stall: stall}
	}
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		timer.Stop()
		if context.Cause(ctx) == errStalled {
			err = fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), errStalled)
		}
		cancel(nil)
		return nil, err
	}
	timer.Reset(stall)
	resp.Body = &watchedBody{rc: resp.Body, timer: timer, stall: stall, ctx: ctx, cancel: cancel}
	return resp, nil
}

// sentBody re-arms the stall timer whenever the transport takes more of a
// request body, so an upload stalls only when it stops moving.
type sentBody struct {
	io.ReadCloser
	timer *time.Timer
	stall time.Duration
}

func (b *sentBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.timer.Reset(b.stall)
	}
	return n, err
}

// watchedBody re-arms the stall timer on every read; when it fires the
// request's context is cancelled, which unblocks the read, and the read's
// error says it stalled.
type watchedBody struct {
	rc     io.ReadCloser
	timer  *time.Timer
	stall  time.Duration
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && context.Cause(b.ctx) == errStalled {
		return n, errStalled
	}
	if err == nil {
		b.timer.Reset(b.stall)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		b.timer.Stop()
		b.cancel(nil)
	})
	return err
}
