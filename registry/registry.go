// Package registry is the place images live in a registry: it opens an image or index by
// reference and pushes one, with go-containerregistry's remote package under our settings
// (TLS, credentials from the docker config, retries, upload jobs, and no plain HTTP unless
// allowed or to a loopback host, see [Options.PlainHTTP]), and checks before a push that one
// would be accepted ([CheckPush]). It speaks ggcr's v1.Image and v1.ImageIndex and knows
// nothing of Nydus.
//
// Reading fetches the manifest or index only; configs and layers are fetched when a caller
// asks for them, and verified against their digests by ggcr as they stream. Pushing writes
// every blob, then each manifest, and the manifest or index the reference names last.
package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nydus-go/nydusify/internal/ocidesc"
	"github.com/nydus-go/nydusify/internal/retry"
)

// Options configures registry I/O. The zero value is the default: HTTPS with certificate
// verification, credentials from the docker config, retry.Default, 4 jobs.
type Options struct {
	// Insecure skips TLS certificate verification. Connections still use HTTPS.
	Insecure bool
	// PlainHTTP allows plain HTTP to the registry. ggcr still tries HTTPS first and falls back
	// to HTTP only when HTTPS fails. Without it no request goes out over plain HTTP, with one
	// exception, the loopback rule: a registry on a loopback host ([IsLoopback]: "localhost",
	// "*.localhost", 127.0.0.0/8, ::1) gets the same HTTP fallback without it, by the
	// convention go-containerregistry, containerd and docker follow (traffic that never
	// leaves the machine has nothing for TLS to protect). There is no automatic downgrade on
	// timeouts, refused connections or error statuses; ggcr's fallback for private (RFC 1918)
	// addresses is refused too. A refused plain-HTTP request fails with [ErrPlainHTTPRefused].
	PlainHTTP bool
	// Keychain resolves credentials. nil means authn.DefaultKeychain: the docker config
	// ($DOCKER_CONFIG/config.json, else ~/.docker/config.json) with its credential helpers;
	// without one, $REGISTRY_AUTH_FILE or podman's containers/auth.json; else anonymous.
	Keychain authn.Keychain
	// Retry is the retry policy of every request (see Policy); the zero value is
	// retry.Default. Its Stall timeout bounds how long a silent registry can hold a request.
	Retry retry.Policy
	// Retries, when not 0, is how many times a request failing with a transient error
	// (network errors, resets, stalls, 408, 429, 5xx) is retried: it sets Retry.Attempts to
	// Retries+1. A negative value disables retrying.
	Retries int
	// Jobs is how many blobs are uploaded at once. 0 means 4.
	Jobs int
	// UserAgent is prepended to ggcr's User-Agent header; empty leaves ggcr's alone.
	UserAgent string
}

// Reference parses a registry reference ("host[:port]/repo[:tag]" or "…@sha256:…") for use
// with ggcr, marking it insecure when PlainHTTP is set or its registry is a loopback host,
// so that ggcr may fall back to HTTP.
func (o Options) Reference(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	if o.PlainHTTP || IsLoopback(r.Context().RegistryStr()) {
		return name.ParseReference(ref, name.Insecure)
	}
	return r, nil
}

// IsLoopback reports whether a registry ("host[:port]") is on a loopback host: "localhost"
// or a name under ".localhost" (RFC 6761), an address in 127.0.0.0/8, or ::1. Such a
// registry may be reached over plain HTTP without [Options.PlainHTTP] (the loopback rule).
func IsLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	return isLoopback(strings.Trim(host, "[]"))
}

// ErrPlainHTTPRefused is wrapped by the error of a request that would have gone out over
// plain HTTP to a registry that is not a loopback host, without [Options.PlainHTTP].
var ErrPlainHTTPRefused = errors.New("plain HTTP not allowed")

// Transport returns the HTTP transport for these settings: TLS verification unless
// Insecure, and the plain-HTTP guard unless PlainHTTP.
func (o Options) Transport() (http.RoundTripper, error) {
	defaultTransport, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("registry options: remote.DefaultTransport is a %T, not an *http.Transport", remote.DefaultTransport)
	}
	base := defaultTransport.Clone()
	if o.Insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	if o.PlainHTTP {
		return base, nil
	}
	return httpsOnly{next: base}, nil
}

// RetryingTransport is Transport wrapped with the retry policy (Policy): the transport of
// every registry request made through ggcr's remote package. (Transport alone is for callers
// that retry themselves, such as the mount's registry backend.)
func (o Options) RetryingTransport() (http.RoundTripper, error) {
	rt, err := o.Transport()
	if err != nil {
		return nil, err
	}
	return o.Policy().Transport(rt), nil
}

// Policy returns the retry policy these options give: Retry, with Attempts set from Retries
// when that is not 0.
func (o Options) Policy() retry.Policy {
	p := o.Retry
	if o.Retries != 0 {
		p.Attempts = max(o.Retries, 0) + 1
	}
	return p
}

// uploadTries bounds ggcr's retry of a whole blob upload, which covers the upload request
// whose streamed body cannot be replayed request by request.
const uploadTries = 3

// Credentials returns Keychain, or authn.DefaultKeychain when it is nil.
func (o Options) Credentials() authn.Keychain {
	if o.Keychain == nil {
		return authn.DefaultKeychain
	}
	return o.Keychain
}

// RemoteOptions returns the ggcr remote options for these settings: transport (TLS, the
// plain-HTTP guard and the retry policy), credentials, retries, jobs and user agent. A
// negative Jobs is an error.
//
// Retrying is ours, not ggcr's, so that attempts do not multiply: every request that can be
// replayed is tried up to Policy().Attempts times by retry.Policy.Transport, which also fails
// a request whose headers or body stall. ggcr's own retry of single requests is switched off
// (no status codes, and a predicate that refuses the raw transport errors it would see). Its
// retry of a whole blob upload or manifest put stays, at most 3 tries (fewer when retrying is
// reduced), because the upload's PATCH streams a body no transport can replay: a request
// inside an upload is tried at most 3×Attempts times, any other at most Attempts times.
func (o Options) RemoteOptions() ([]remote.Option, error) {
	if o.Jobs < 0 {
		return nil, fmt.Errorf("registry options: jobs %d is negative", o.Jobs)
	}
	rt, err := o.RetryingTransport()
	if err != nil {
		return nil, err
	}
	opts := []remote.Option{
		remote.WithTransport(noPatchReplay{rt}),
		remote.WithAuthFromKeychain(o.Credentials()),
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(wholeOperationRetryable),
		// Steps counts tries, and must stay positive: with 0 ggcr runs nothing and reports success.
		remote.WithRetryBackoff(remote.Backoff{
			Duration: 500 * time.Millisecond,
			Factor:   2,
			Jitter:   0.25,
			Steps:    min(o.Policy().Tries(), uploadTries),
		}),
	}
	if o.Jobs > 0 {
		opts = append(opts, remote.WithJobs(o.Jobs))
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return opts, nil
}

// wholeOperationRetryable is ggcr's retry predicate. ggcr asks it both about the raw error of
// one round trip (its retrying transport) and about the error of a whole upload or manifest
// put, where round-trip failures arrive wrapped in a *url.Error by http.Client and error
// answers as a *transport.Error. Only the latter are retried: single requests were retried by
// our transport already.
func wholeOperationRetryable(err error) bool {
	var ue *url.Error
	var te *transport.Error
	if !errors.As(err, &ue) && !errors.As(err, &te) {
		return false
	}
	return retry.Retryable(err)
}

// noPatchReplay keeps the retry transport from sending an upload's PATCH again: the registry
// may have appended part of the first one to the upload, so a replay would corrupt it. A
// failed PATCH fails its upload, which ggcr retries whole in a new upload session.
type noPatchReplay struct{ next http.RoundTripper }

func (n noPatchReplay) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPatch && req.GetBody != nil {
		r := *req
		r.GetBody = nil
		req = &r
	}
	return n.next.RoundTrip(req)
}

// httpsOnly refuses plain-HTTP requests except to loopback hosts. ggcr falls back to HTTP for
// private addresses on its own (name.Registry.Scheme); behind this guard that fallback, token
// realms and redirects over HTTP fail instead of silently going unencrypted.
type httpsOnly struct{ next http.RoundTripper }

func (h httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Hostname()) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("refusing plain HTTP to %s: %w (allow it with the plain-HTTP option)", req.URL.Host, ErrPlainHTTPRefused)
	}
	return h.next.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Artifact is what a registry stores under a reference: a v1.Image or a v1.ImageIndex.
type Artifact interface {
	partial.Describable
	RawManifest() ([]byte, error)
}

// Open fetches the manifest or index ref names and returns its descriptor with the image
// (a v1.Image) or index (a v1.ImageIndex) over it. Nothing else is fetched until asked for.
func Open(ctx context.Context, ref string, opts Options) (v1.Descriptor, Artifact, error) {
	nref, err := opts.Reference(ref)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	ropts, err := opts.RemoteOptions()
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	p, err := remote.NewPuller(ropts...)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	desc, err := p.Get(ctx, nref)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("fetching manifest of %s: %w", nref, err)
	}
	var a Artifact
	switch {
	case desc.MediaType.IsIndex():
		a, err = desc.ImageIndex()
	case desc.MediaType.IsImage():
		a, err = desc.Image()
	default:
		return v1.Descriptor{}, nil, fmt.Errorf("%s has media type %s, which is neither an image nor an index", nref, desc.MediaType)
	}
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading %s: %w", nref, err)
	}
	return desc.Descriptor, a, nil
}

// CheckPush checks, before anything is built, that an image can be pushed to ref: the
// registry answers (over HTTPS, or plain HTTP as opts allow), the credentials are granted
// the push scope, and the repository accepts the start of a blob upload, which is then
// cancelled. Nothing is written. The error keeps its cause: a registry answering HTTPS with
// plain HTTP wraps [http.ErrSchemeMismatch], one refused plain HTTP [ErrPlainHTTPRefused],
// a denied push a *transport.Error with status 401 or 403.
func CheckPush(ctx context.Context, ref string, opts Options) error {
	nref, err := opts.Reference(ref)
	if err != nil {
		return err
	}
	rt, err := opts.RetryingTransport()
	if err != nil {
		return err
	}
	// remote.CheckPushPermission takes no context; run it aside so ctx still cancels.
	done := make(chan error, 1)
	go func() { done <- remote.CheckPushPermission(nref, opts.Credentials(), rt) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("checking that %s accepts a push: %w", nref, err)
	}
	return nil
}

// Push writes a (a v1.Image or a v1.ImageIndex) to the registry under ref and returns its
// descriptor (media type, size, digest). ggcr uploads layers and configs (opts.Jobs at a
// time; blobs the registry already has are skipped), then each child manifest, and puts the
// manifest or index ref names last, so a reader never sees a manifest whose blobs are
// missing. Cancelling ctx stops it.
func Push(ctx context.Context, ref string, a Artifact, opts Options) (v1.Descriptor, error) {
	desc, err := ocidesc.Of(a)
	if err != nil {
		return v1.Descriptor{}, err
	}
	nref, err := opts.Reference(ref)
	if err != nil {
		return v1.Descriptor{}, err
	}
	ropts, err := opts.RemoteOptions()
	if err != nil {
		return v1.Descriptor{}, err
	}
	p, err := remote.NewPusher(ropts...)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := p.Push(ctx, nref, a); err != nil {
		return v1.Descriptor{}, fmt.Errorf("pushing %s: %w", nref, err)
	}
	return desc, nil
}

// RetryingLayer returns l with a Compressed stream that survives the registry cutting it off
// midway: it is opened again and resumes where it stopped (Policy.Reader), under p. Layers of
// an image are fetched lazily as they are read, and a single request cannot replay a body
// already handed to the reader; this covers that. Uncompressed decompresses that stream;
// other methods are l's.
func RetryingLayer(ctx context.Context, l v1.Layer, p retry.Policy) v1.Layer {
	rl := retryingLayer{Layer: l, ctx: ctx, p: p}
	if wrapped, err := partial.CompressedToLayer(rl); err == nil {
		return wrapped
	}
	return rl
}

type retryingLayer struct {
	v1.Layer
	ctx context.Context
	p   retry.Policy
}

func (l retryingLayer) Compressed() (io.ReadCloser, error) {
	op := "reading layer"
	if d, err := l.Digest(); err == nil {
		op += " " + d.String()
	}
	r := l.p.Reader(l.ctx, op, l.Layer.Compressed)
	// Open now, so that a failing request is reported here, as ggcr does.
	if _, err := r.Read(nil); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
