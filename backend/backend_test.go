package backend_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/backend"
)

func testData() ([]byte, string) {
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:])
}

// checkRanges reads a few ranges of blob id through be and compares them
// with data, including a read running past the end.
func checkRanges(t *testing.T, be backend.Backend, id string, data []byte) {
	t.Helper()
	ctx := context.Background()
	size, err := be.Size(ctx, id)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Size = %d, %v; want %d", size, err, len(data))
	}
	for _, r := range []struct{ off, n int }{{0, 10}, {12345, 4096}, {len(data) - 1, 1}, {0, len(data)}} {
		p := make([]byte, r.n)
		n, err := be.ReadAt(ctx, id, p, int64(r.off))
		if err != nil || n != r.n || !bytes.Equal(p, data[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d+%d) = %d, %v, equal %v", r.off, r.n, n, err, bytes.Equal(p[:n], data[r.off:r.off+n]))
		}
	}
	p := make([]byte, 100)
	n, err := be.ReadAt(ctx, id, p, int64(len(data)-40))
	if n != 40 || !errors.Is(err, io.EOF) || !bytes.Equal(p[:n], data[len(data)-40:]) {
		t.Errorf("ReadAt past the end = %d, %v; want 40, EOF", n, err)
	}
	if _, err := be.Size(ctx, strings.Repeat("0", 64)); err == nil {
		t.Error("Size of a missing blob succeeded")
	}
	if _, err := be.ReadAt(ctx, "../etc", p, 0); err == nil {
		t.Error("ReadAt of a path-like blob id succeeded")
	}
}

func TestLocalFS(t *testing.T) {
	data, id := testData()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, id), data, 0o644); err != nil {
		t.Fatal(err)
	}
	be := backend.NewLocalFS(dir)
	defer be.Close()
	checkRanges(t, be, id, data)
}

func TestRegistry(t *testing.T) {
	data, id := testData()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://")+"/test/blobs", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, static.NewLayer(data, types.OCILayer)); err != nil {
		t.Fatal(err)
	}
	be, err := backend.NewRegistry(repo)
	if err != nil {
		t.Fatal(err)
	}
	checkRanges(t, be, id, data)
}

func TestRegistryTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return // ping: anonymous access
		}
		<-release
	}))
	defer srv.Close()
	defer close(release)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://")+"/hang", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.NewRegistry(repo, backend.WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = be.ReadAt(context.Background(), strings.Repeat("a", 64), make([]byte, 10), 0)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("ReadAt on a hanging registry = %v after %v; want a timeout error", err, time.Since(start))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if _, err := backend.NewRegistry(repo, backend.WithTimeout(0)); err == nil {
		t.Error("a zero timeout was accepted")
	}
}

// TestRegistryTokenRefresh puts a token-authenticating front on a real
// in-process registry. Each token serves three requests, then the registry
// answers 401 with a fresh challenge: the backend must get a new token and
// go on reading, as it must when a long-running mount outlives its token.
func TestRegistryTokenRefresh(t *testing.T) {
	data, id := testData()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var (
		mu     sync.Mutex
		issued int
		uses   = map[string]int{}
	)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			mu.Lock()
			issued++
			tok := fmt.Sprintf("tok-%d", issued)
			mu.Unlock()
			fmt.Fprintf(w, `{"token": %q}`, tok)
			return
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		ok := strings.HasPrefix(tok, "tok-") && uses[tok] < 3
		uses[tok]++
		mu.Unlock()
		if !ok {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, srv.URL))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://")+"/test/blobs", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	// Upload straight to the registry, past the token front.
	direct := httptest.NewServer(reg)
	defer direct.Close()
	drepo, _ := name.NewRepository(strings.TrimPrefix(direct.URL, "http://")+"/test/blobs", name.Insecure)
	if err := remote.WriteLayer(drepo, static.NewLayer(data, types.OCILayer)); err != nil {
		t.Fatal(err)
	}
	be, err := backend.NewRegistry(repo)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		p := make([]byte, 1000)
		if _, err := be.ReadAt(context.Background(), id, p, int64(i*1000)); err != nil || !bytes.Equal(p, data[i*1000:(i+1)*1000]) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if issued < 4 {
		t.Errorf("%d tokens issued for 10 reads of 3 uses each; the backend did not refresh", issued)
	}
}
