package retry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/internal/faultproxy"
	"github.com/nydus-go/nydusify/internal/retry"
)

// blobServer serves one 256 KiB blob at /blob and 404 elsewhere, counting
// the requests that reach it.
func blobServer(t *testing.T) (*httptest.Server, []byte, *atomic.Int64) {
	t.Helper()
	blob := bytes.Repeat([]byte("0123456789abcdef"), 16<<10)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/blob" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(srv.Close)
	return srv, blob, &hits
}

func fetch(ctx context.Context, client *http.Client, url string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &retry.StatusError{Code: resp.StatusCode, Method: req.Method, URL: url}
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil && len(b) != want {
		err = retry.Temporary(fmt.Errorf("body of %d bytes, want %d", len(b), want))
	}
	return b, err
}

// TestFaultsAreRetried: through a proxy injecting every kind of fault into
// 30% of requests, every fetch made under the policy returns the right bytes.
func TestFaultsAreRetried(t *testing.T) {
	srv, blob, _ := blobServer(t)
	px, err := faultproxy.Start(srv.URL, faultproxy.Options{Rate: 0.3, Seed: 1, StallFor: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	p := retry.Policy{Attempts: 8, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Stall: 200 * time.Millisecond}
	client := &http.Client{Transport: p.Transport(nil)}
	want := sha256.Sum256(blob)
	for i := range 60 {
		var got []byte
		err := p.Do(context.Background(), "fetching blob", func(ctx context.Context) error {
			var err error
			got, err = fetch(ctx, client, "http://"+px.Host+"/blob", len(blob))
			return err
		})
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if sha256.Sum256(got) != want {
			t.Fatalf("fetch %d: wrong bytes", i)
		}
	}
	n, faults := px.Stats()
	for _, k := range []faultproxy.Kind{faultproxy.Status, faultproxy.Reset, faultproxy.Truncate, faultproxy.Stall} {
		if faults[k] == 0 {
			t.Errorf("no %v fault was injected in %d requests; the test proves nothing about it", k, n)
		}
	}
}

// TestGivesUpWithCause: when every request fails, Do stops after Attempts
// and its error names the last cause; a 404 is not retried at all.
func TestGivesUpWithCause(t *testing.T) {
	srv, blob, hits := blobServer(t)
	px, err := faultproxy.Start(srv.URL, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Status}})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	p := retry.Policy{Attempts: 3, Backoff: time.Millisecond}
	client := &http.Client{Transport: retry.Policy{Attempts: 1}.Transport(nil)}
	calls := 0
	err = p.Do(context.Background(), "fetching blob", func(ctx context.Context) error {
		calls++
		_, err := fetch(ctx, client, "http://"+px.Host+"/blob", len(blob))
		return err
	})
	var re *retry.Error
	if !errors.As(err, &re) || calls != 3 || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("calls %d, err %v", calls, err)
	}

	before := hits.Load()
	calls = 0
	err = p.Do(context.Background(), "fetching missing", func(ctx context.Context) error {
		calls++
		_, err := fetch(ctx, &http.Client{Transport: p.Transport(nil)}, srv.URL+"/missing", 1)
		return err
	})
	if calls != 1 || hits.Load()-before != 1 || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: calls %d, requests %d, err %v", calls, hits.Load()-before, err)
	}
}

// TestStallIsBounded: a server that stops sending in the middle of a body
// fails the read after the stall timeout instead of hanging.
func TestStallIsBounded(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	client := &http.Client{Transport: retry.Policy{Attempts: 1, Stall: 200 * time.Millisecond}.Transport(nil)}
	start := time.Now()
	_, err := fetch(context.Background(), client, srv.URL, 100)
	if err == nil || !retry.Retryable(err) || time.Since(start) > 5*time.Second {
		t.Errorf("stalled body: err %v (retryable %v) after %v", err, retry.Retryable(err), time.Since(start))
	}
}

// TestSlowUploadIsNotAStall: a request body that takes longer than the stall
// timeout to send, but keeps moving, is not a stall; a body that stops
// moving is one.
func TestSlowUploadIsNotAStall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		fmt.Fprint(w, n)
	}))
	defer srv.Close()
	client := &http.Client{Transport: retry.Policy{Attempts: 1, Stall: 200 * time.Millisecond}.Transport(nil)}
	send := func(pause time.Duration, pieces int) (string, error) {
		pr, pw := io.Pipe()
		go func() {
			for range pieces {
				time.Sleep(pause)
				if _, err := pw.Write(make([]byte, 1000)); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, err := http.NewRequest(http.MethodPut, srv.URL, pr)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			pr.CloseWithError(err)
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// 12 pieces 60ms apart: 720ms in all, more than three stall timeouts.
	if got, err := send(60*time.Millisecond, 12); err != nil || got != "12000" {
		t.Errorf("moving upload of 720ms under a 200ms stall timeout: %q, %v", got, err)
	}
	if _, err := send(time.Second, 2); err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("upload pausing 1s under a 200ms stall timeout: %v, want a stall", err)
	}
}

// A connection closed before any answer, as http.Client reports it (a
// *url.Error around io.EOF, whose own Temporary method says false), is
// worth another try.
func TestRetryableClosedConnection(t *testing.T) {
	err := &url.Error{Op: "Patch", URL: "http://127.0.0.1/upload", Err: io.EOF}
	if !retry.Retryable(err) || !retry.Retryable(fmt.Errorf("pushing: %w", err)) {
		t.Errorf("Retryable(%v) = false", err)
	}
	// A reset while the body was being sent, as a PATCH meets it.
	sending := &url.Error{Op: "Patch", URL: "http://127.0.0.1/upload", Err: &net.OpError{Op: "readfrom", Net: "tcp",
		Err: &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}}}
	if !retry.Retryable(sending) {
		t.Errorf("Retryable(%v) = false", sending)
	}
	if retry.Retryable(&url.Error{Op: "Get", URL: "http://127.0.0.1/", Err: errors.New("unsupported protocol scheme")}) {
		t.Error("a url.Error around a permanent error is retryable")
	}
}

// TestSmallBodyCutIsRetried: a small body (a manifest, a config) cut off
// midway is retried by the transport itself, so a caller reading it once
// gets it whole.
func TestSmallBodyCutIsRetried(t *testing.T) {
	small := bytes.Repeat([]byte("manifest"), 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "m", time.Time{}, bytes.NewReader(small))
	}))
	defer srv.Close()
	px, err := faultproxy.Start(srv.URL, faultproxy.Options{Rate: 0.5, Seed: 5, Kinds: []faultproxy.Kind{faultproxy.Truncate}})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	client := &http.Client{Transport: retry.Policy{Attempts: 10, Backoff: time.Millisecond}.Transport(nil)}
	for i := range 30 {
		resp, err := client.Get("http://" + px.Host + "/m")
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, small) {
			t.Fatalf("get %d: %d bytes, %v", i, len(got), err)
		}
	}
	if _, faults := px.Stats(); faults[faultproxy.Truncate] == 0 {
		t.Fatal("no body was cut; the test proves nothing")
	}
}
