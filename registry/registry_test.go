package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nydus-go/nydusify/internal/faultproxy"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/retry"
)

// basicAuth lets through only requests carrying user:pass, answering others with a Basic
// challenge as a real registry does.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// The default keychain reads $DOCKER_CONFIG/config.json, so credentials there reach the registry.
func TestOpenCredentialsFromDockerConfig(t *testing.T) {
	host := fx.StartRegistry(t, basicAuth("alice", "s3cret"))
	ref := fx.MustRef(t, host+"/private:v1")
	img := fx.NewImage(t, fx.AMD64, true, fx.Gzip)
	if err := remote.Write(ref, img.Image, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}

	// Keep the test away from the real ~/.docker and podman files.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	configDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", configDir)
	writeConfig := func(user, pass string) {
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		fx.WriteFile(t, filepath.Join(configDir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`))
	}
	open := func() error {
		_, _, err := Open(context.Background(), ref.String(), Options{})
		return err
	}

	if err := open(); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("without credentials: %v, want 401", err)
	}
	writeConfig("alice", "wrong")
	if err := open(); err == nil {
		t.Fatal("with a wrong password: no error")
	}
	writeConfig("alice", "s3cret")
	if err := open(); err != nil {
		t.Fatalf("with credentials in $DOCKER_CONFIG: %v", err)
	}
	// An explicit keychain replaces the default one.
	_, _, err := Open(context.Background(), ref.String(), Options{Keychain: authn.NewMultiKeychain()})
	if err == nil {
		t.Fatal("with an empty explicit keychain: no error")
	}
}

// registryCounting is an in-process registry that counts the requests it serves.
func registryCounting(hits *atomic.Int64) http.Handler {
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		reg.ServeHTTP(w, r)
	})
}

// remoteName makes a server on 127.0.0.1 look like a remote registry: it returns the name
// "registry.example:PORT", which is not a loopback host, and until the test ends every
// Options.Transport dials that name to the server. The test must not run in parallel.
func remoteName(t *testing.T, serverHost string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(serverHost)
	if err != nil {
		t.Fatal(err)
	}
	fake := "registry.example:" + port
	orig := remote.DefaultTransport
	tr := orig.(*http.Transport).Clone()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, "registry.example:") {
			addr = serverHost
		}
		return d.DialContext(ctx, network, addr)
	}
	remote.DefaultTransport = tr
	t.Cleanup(func() { remote.DefaultTransport = orig })
	return fake
}

// Without PlainHTTP nothing falls back to HTTP: against an HTTP-only registry at a
// non-loopback name the HTTPS attempt fails, naming the scheme mismatch, and no request
// reaches the registry.
func TestNoSilentDowngradeToHTTP(t *testing.T) {
	var hits atomic.Int64
	s := httptest.NewServer(registryCounting(&hits))
	t.Cleanup(s.Close)
	server := strings.TrimPrefix(s.URL, "http://")
	if err := remote.Write(fx.MustRef(t, server+"/app:v1"), fx.NewImage(t, fx.AMD64, true, fx.Gzip).Image); err != nil {
		t.Fatal(err)
	}
	host := remoteName(t, server)
	hits.Store(0)

	// ggcr's own choice: HTTPS only for this host.
	if got := fx.MustRef(t, host+"/app:v1").Context().Registry.Scheme(); got != "https" {
		t.Fatalf("ggcr scheme for %s = %s, want https", host, got)
	}

	ref := host + "/app:v1"
	for _, opts := range []Options{{}, {Insecure: true}, {Retries: -1}} {
		_, _, err := Open(context.Background(), ref, opts)
		if err == nil {
			t.Fatalf("PlainHTTP=false (%+v) reached an HTTP-only registry", opts)
		}
		if !strings.Contains(err.Error(), "https://"+host) || !errors.Is(err, http.ErrSchemeMismatch) {
			t.Errorf("error %q does not show the HTTPS attempt and its scheme mismatch", err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the HTTP-only registry without PlainHTTP", n)
	}
	if _, _, err := Open(context.Background(), ref, Options{PlainHTTP: true}); err != nil {
		t.Fatalf("with PlainHTTP: %v", err)
	}
	if hits.Load() == 0 {
		t.Fatal("with PlainHTTP no request reached the registry")
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "reg.localhost:5000": true,
		"127.0.0.1": true, "127.0.0.1:5000": true, "127.9.8.7:80": true, "[::1]:5000": true, "::1": true,
		"10.0.0.1:5000": false, "192.168.1.2": false, "registry.example.com": false, "[::2]:5000": false,
		"127.0.0.1.example.com:5000": false, "localhost.example.com": false, "localhostx:5000": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

// The loopback rule covers all of 127.0.0.0/8, where ggcr's own covers only 127.0.0.1: an
// HTTP-only registry on 127.0.0.2 is reached without PlainHTTP.
func TestLoopbackRule(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("needs 127.0.0.2 to be a local address (Linux routes 127/8 to lo): %v", err)
	}
	var hits atomic.Int64
	s := httptest.NewUnstartedServer(registryCounting(&hits))
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	if got := fx.MustRef(t, host+"/app:v1").Context().Registry.Scheme(); got != "https" {
		t.Fatalf("ggcr scheme for %s = %s; this test documents that its loopback rule stops at 127.0.0.1", host, got)
	}
	if _, err := Push(context.Background(), host+"/app:v1", fx.NewImage(t, fx.AMD64, true, fx.Gzip).Image, Options{}); err != nil {
		t.Fatalf("pushing to a loopback registry without PlainHTTP: %v", err)
	}
	if _, _, err := Open(context.Background(), host+"/app:v1", Options{}); err != nil {
		t.Fatalf("opening from a loopback registry without PlainHTTP: %v", err)
	}
}

// CheckPush writes nothing, passes where a push would, and fails where it would fail, with
// the cause kept for callers to branch on.
func TestCheckPush(t *testing.T) {
	ctx := context.Background()
	rr := startRecordingRegistry(t)
	if err := CheckPush(ctx, rr.host+"/app:v1", Options{}); err != nil {
		t.Fatalf("CheckPush to a writable loopback registry: %v", err)
	}
	if len(rr.writes) != 0 {
		t.Errorf("CheckPush wrote %v", rr.writes)
	}

	private := fx.StartRegistry(t, basicAuth("alice", "s3cret"))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	err := CheckPush(ctx, private+"/app:v1", Options{})
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("CheckPush without credentials = %v, want a 401 transport error", err)
	}
	kc := authn.NewMultiKeychain(staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "alice", Password: "s3cret"})})
	if err := CheckPush(ctx, private+"/app:v1", Options{Keychain: kc}); err != nil {
		t.Errorf("CheckPush with credentials: %v", err)
	}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	if err := CheckPush(ctx, addr+"/app:v1", Options{Retries: -1}); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("CheckPush to a closed port = %v, want connection refused", err)
	}

	host := remoteName(t, rr.host)
	if err := CheckPush(ctx, host+"/app:v1", Options{}); !errors.Is(err, http.ErrSchemeMismatch) {
		t.Errorf("CheckPush over HTTPS to an HTTP registry = %v, want http.ErrSchemeMismatch", err)
	}
	if err := CheckPush(ctx, host+"/app:v1", Options{PlainHTTP: true}); err != nil {
		t.Errorf("CheckPush with PlainHTTP: %v", err)
	}
	if len(rr.writes) != 0 {
		t.Errorf("CheckPush wrote %v", rr.writes)
	}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if err := CheckPush(ctxDone, rr.host+"/app:v1", Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("CheckPush with a cancelled context = %v", err)
	}
}

// staticKeychain hands the same authenticator to every registry.
type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// ggcr falls back to HTTP by itself for private addresses; the guard refuses it.
func TestHTTPSOnlyRefusesPrivateFallback(t *testing.T) {
	if got := fx.MustRef(t, "10.1.2.3:5000/app").Context().Registry.Scheme(); got != "http" {
		t.Fatalf("ggcr scheme for a private address = %s; this test documents its fallback to http", got)
	}
	guard := httpsOnly{next: http.DefaultTransport}
	for _, u := range []string{"http://10.1.2.3:5000/v2/", "http://registry.example.com/token", "http://127.0.0.1.example.com/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := guard.RoundTrip(req); !errors.Is(err, ErrPlainHTTPRefused) || !strings.Contains(err.Error(), "refusing plain HTTP") {
			t.Errorf("RoundTrip(%s) = %v, want refusal", u, err)
		}
	}
	// Loopback hosts pass, as ggcr's localhost rule expects.
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer s.Close()
	for _, u := range []string{s.URL, strings.Replace(s.URL, "127.0.0.1", "localhost", 1)} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		resp, err := guard.RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip(%s): %v", u, err)
		}
		resp.Body.Close()
	}
}

// A transient 503 is retried unless retrying is off.
func TestRetries(t *testing.T) {
	var failures, hits atomic.Int64
	host := fx.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				hits.Add(1)
				if failures.Add(-1) >= 0 {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	img := fx.NewImage(t, fx.AMD64, true, fx.Gzip)
	failures.Store(0)
	if err := remote.Write(fx.MustRef(t, host+"/app:v1"), img.Image); err != nil {
		t.Fatal(err)
	}
	ref := host + "/app:v1"

	failures.Store(1)
	hits.Store(0)
	if _, _, err := Open(context.Background(), ref, Options{Retries: -1}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Retries -1 after a 503: %v, want the 503", err)
	}
	if hits.Load() != 1 {
		t.Errorf("Retries -1: %d manifest requests, want 1", hits.Load())
	}
	failures.Store(1)
	hits.Store(0)
	if _, _, err := Open(context.Background(), ref, Options{Retries: 1}); err != nil {
		t.Fatalf("Retries 1 after one 503: %v", err)
	}
	if hits.Load() != 2 {
		t.Errorf("Retries 1 after one 503: %d manifest requests, want 2", hits.Load())
	}
}

// fastRetry keeps the tests' waits short.
var fastRetry = retry.Policy{Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Stall: 300 * time.Millisecond}

// Retrying is done once: a registry answering 503 to every manifest request sees exactly
// Attempts of them, not ggcr's tries times ours; the error is the registry's answer.
func TestRetryAttemptsDoNotMultiply(t *testing.T) {
	var hits atomic.Int64
	host := fx.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				hits.Add(1)
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	for _, attempts := range []int{1, 5} {
		hits.Store(0)
		p := fastRetry
		p.Attempts = attempts
		_, _, err := Open(context.Background(), host+"/app:v1", Options{Retry: p})
		if err == nil || !strings.Contains(err.Error(), "503") {
			t.Errorf("Attempts %d: %v, want the 503", attempts, err)
		}
		if hits.Load() != int64(attempts) {
			t.Errorf("Attempts %d: %d manifest requests", attempts, hits.Load())
		}
	}
}

// A registry that accepts the connection and then says nothing fails the request after the
// stall timeout on every attempt, with an error that says it stalled, instead of hanging.
func TestStalledRegistry(t *testing.T) {
	host := fx.StartRegistry(t, nil)
	if err := remote.Write(fx.MustRef(t, host+"/app:v1"), fx.NewImage(t, fx.AMD64, true, fx.Gzip).Image); err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.Start("http://"+host, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Stall}, StallFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	p := fastRetry
	p.Attempts = 2
	start := time.Now()
	_, _, err = Open(context.Background(), px.Host+"/app:v1", Options{Retry: p})
	if err == nil || !strings.Contains(err.Error(), "stalled") || time.Since(start) > 10*time.Second {
		t.Fatalf("stalled registry: %v after %v, want a stall error within seconds", err, time.Since(start))
	}
	if n, _ := px.Stats(); n != 2 {
		t.Errorf("%d requests reached the stalled registry, want 2 (one per attempt)", n)
	}
}

// An upload whose PATCH is cut off (its streamed body cannot be replayed request by request)
// is retried as a whole, and the push succeeds.
func TestPushRetriesUploadCutOff(t *testing.T) {
	var cut atomic.Int64
	cut.Store(2)
	host := fx.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch && cut.Add(-1) >= 0 {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	img := fx.NewImage(t, fx.AMD64, true, fx.Gzip)
	if _, err := Push(context.Background(), host+"/app:v1", img.Image, Options{Retry: fastRetry}); err != nil {
		t.Fatalf("push with two uploads cut off: %v", err)
	}
	if cut.Load() >= 0 {
		t.Fatal("no upload was cut off; the test proves nothing")
	}
	got, err := remote.Image(fx.MustRef(t, host+"/app:v1"))
	if err != nil {
		t.Fatal(err)
	}
	fx.CheckLayers(t, got, img)
}

func TestRemoteOptionsErrors(t *testing.T) {
	if _, err := (Options{Jobs: -1}).RemoteOptions(); err == nil {
		t.Error("negative jobs accepted")
	}
	if _, err := (Options{}).Reference("not a reference"); err == nil || !strings.Contains(err.Error(), `parsing image reference "not a reference"`) {
		t.Errorf("Reference of a malformed name: %v", err)
	}
}

// Insecure skips certificate verification but stays on HTTPS.
func TestInsecureSkipsVerification(t *testing.T) {
	var hits atomic.Int64
	s := httptest.NewUnstartedServer(registryCounting(&hits))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "https://")
	if err := remote.Write(fx.MustRef(t, host+"/app:v1"), fx.NewImage(t, fx.AMD64, true, fx.Gzip).Image, remote.WithTransport(s.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	ref := host + "/app:v1"
	if _, _, err := Open(context.Background(), ref, Options{Retries: -1}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed certificate without Insecure: %v, want a certificate error", err)
	}
	if _, _, err := Open(context.Background(), ref, Options{Insecure: true}); err != nil {
		t.Fatalf("with Insecure: %v", err)
	}
}
