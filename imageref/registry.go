package imageref

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RegistryOptions configures registry I/O. The zero value is the default: HTTPS with
// certificate verification, credentials from the docker config, ggcr's retries, 4 jobs.
type RegistryOptions struct {
	// Insecure skips TLS certificate verification. Connections still use HTTPS.
	Insecure bool
	// PlainHTTP allows plain HTTP to the registry. ggcr still tries HTTPS first and falls back
	// to HTTP only when HTTPS fails. Without it no request goes out over plain HTTP, with one
	// exception: ggcr's own loopback rule ("localhost", "*.localhost", 127.0.0.1, ::1), for
	// which it always allows the HTTP fallback. There is no automatic downgrade on timeouts,
	// refused connections or error statuses; ggcr's fallback for private (RFC 1918) addresses
	// is refused too.
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

// Reference parses the Name of a registry Ref for use with ggcr, marking it insecure when
// PlainHTTP is set so that ggcr may fall back to HTTP.
func (o RegistryOptions) Reference(r Ref) (name.Reference, error) {
	if r.Kind != Registry {
		return nil, fmt.Errorf("%s is not a registry reference", r)
	}
	var nameOpts []name.Option
	if o.PlainHTTP {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.ParseReference(r.Name, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", r.Name, err)
	}
	return ref, nil
}

// Transport returns the HTTP transport for these settings: TLS verification unless
// Insecure, and the plain-HTTP guard unless PlainHTTP.
func (o RegistryOptions) Transport() (http.RoundTripper, error) {
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
func (o RegistryOptions) Credentials() authn.Keychain {
	if o.Keychain == nil {
		return authn.DefaultKeychain
	}
	return o.Keychain
}

// RemoteOptions returns the ggcr remote options for these settings: transport (TLS and the
// plain-HTTP guard), credentials, retries, jobs and user agent. A negative Jobs is an error.
func (o RegistryOptions) RemoteOptions() ([]remote.Option, error) {
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
		return nil, fmt.Errorf("refusing plain HTTP to %s: allow it with the plain-HTTP option", req.URL.Host)
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

// openRegistry fetches the manifest or index named by ref.
func openRegistry(ctx context.Context, ref Ref, opts RegistryOptions) (*Source, error) {
	nref, err := opts.Reference(ref)
	if err != nil {
		return nil, err
	}
	ropts, err := opts.RemoteOptions()
	if err != nil {
		return nil, err
	}
	p, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, err
	}
	desc, err := p.Get(ctx, nref)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest of %s: %w", nref, err)
	}
	src := &Source{desc: desc.Descriptor}
	switch {
	case desc.MediaType.IsIndex():
		src.index, err = desc.ImageIndex()
	case desc.MediaType.IsImage():
		src.image, err = desc.Image()
	default:
		return nil, fmt.Errorf("%s has media type %s, which is neither an image nor an index", nref, desc.MediaType)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", nref, err)
	}
	return src, nil
}
