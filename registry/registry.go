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
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Options configures registry I/O. The zero value is the default: HTTPS with certificate
// verification, credentials from the docker config, ggcr's retries, 4 jobs.
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
	// Retries is how many times a request failing with a transient error (network errors,
	// 408, 429, 5xx) is retried, waiting 1s, 3s, 9s… between tries. 0 means ggcr's default
	// of 2; a negative value disables retrying. ggcr applies it per HTTP request and again per
	// blob upload, so an upload may be tried up to (Retries+1)² times.
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

// Credentials returns Keychain, or authn.DefaultKeychain when it is nil.
func (o Options) Credentials() authn.Keychain {
	if o.Keychain == nil {
		return authn.DefaultKeychain
	}
	return o.Keychain
}

// RemoteOptions returns the ggcr remote options for these settings: transport (TLS and the
// plain-HTTP guard), credentials, retries, jobs and user agent. A negative Jobs is an error.
func (o Options) RemoteOptions() ([]remote.Option, error) {
	if o.Jobs < 0 {
		return nil, fmt.Errorf("registry options: jobs %d is negative", o.Jobs)
	}
	rt, err := o.Transport()
	if err != nil {
		return nil, err
	}
	opts := []remote.Option{remote.WithTransport(rt), remote.WithAuthFromKeychain(o.Credentials())}
	if o.Retries != 0 {
		// Steps counts tries, and must stay positive: with 0 ggcr runs nothing and reports success.
		opts = append(opts, remote.WithRetryBackoff(remote.Backoff{
			Duration: time.Second,
			Factor:   3,
			Jitter:   0.1,
			Steps:    max(o.Retries, 0) + 1,
		}))
	}
	if o.Jobs > 0 {
		opts = append(opts, remote.WithJobs(o.Jobs))
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return opts, nil
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
	rt, err := opts.Transport()
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
	desc, err := describe(a)
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

// describe returns the media type, size and digest of a manifest or index. Unlike
// partial.Descriptor it sets no artifactType, which containerd does not write either and
// docker manifest lists do not define.
func describe(a Artifact) (v1.Descriptor, error) {
	var (
		d   v1.Descriptor
		err error
	)
	if d.MediaType, err = a.MediaType(); err != nil {
		return d, err
	}
	if d.Size, err = a.Size(); err != nil {
		return d, err
	}
	d.Digest, err = a.Digest()
	return d, err
}
