package retry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/internal/faultproxy"
	"github.com/nydus-go/nydusify/internal/retry"
)

// TestReaderResumes: a 256 KiB body cut off halfway on half of the requests
// reads in full and byte for byte through Reader.
func TestReaderResumes(t *testing.T) {
	srv, blob, _ := blobServer(t)
	px, err := faultproxy.Start(srv.URL, faultproxy.Options{Rate: 0.5, Seed: 3, Kinds: []faultproxy.Kind{faultproxy.Truncate}})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	p := retry.Policy{Attempts: 10, Backoff: time.Millisecond}
	open := func() (io.ReadCloser, error) {
		resp, err := http.Get("http://" + px.Host + "/blob")
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}
	for i := range 20 {
		r := p.Reader(context.Background(), "reading blob", open)
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("read %d: %d bytes, %v, equal %v", i, len(got), err, bytes.Equal(got, blob))
		}
	}
	if _, faults := px.Stats(); faults[faultproxy.Truncate] == 0 {
		t.Fatal("no body was cut; the test proves nothing")
	}
}

// TestReaderRefusesSplice: a stream whose content changed between two
// attempts fails instead of joining the first attempt's bytes to the
// second's; a stream cut off every time fails after Attempts.
func TestReaderRefusesSplice(t *testing.T) {
	var n atomic.Int64
	n.Store(-1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		letter := 'a' + rune(n.Add(1))
		if r.URL.Path == "/cut" {
			letter = 'z'
		}
		body := strings.Repeat(string(letter), 1000)
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte(body[:500]))
		w.(http.Flusher).Flush()
		if r.URL.Path == "/cut" || n.Load() == 0 {
			panic(http.ErrAbortHandler) // cut off after 500 bytes
		}
		w.Write([]byte(body[500:]))
	}))
	defer srv.Close()
	p := retry.Policy{Attempts: 3, Backoff: time.Millisecond}
	for _, tc := range []struct{ path, want string }{
		{"/changed", "differ from the previous attempt"},
		{"/cut", "gave up after 3 attempts"},
	} {
		open := func() (io.ReadCloser, error) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				return nil, err
			}
			return resp.Body, nil
		}
		r := p.Reader(context.Background(), "reading", open)
		got, err := io.ReadAll(r)
		if err == nil || !strings.Contains(err.Error(), tc.want) || len(got) != 500 {
			t.Errorf("%s: %d bytes, %v; want 500 bytes and %q", tc.path, len(got), err, tc.want)
		}
	}
}
