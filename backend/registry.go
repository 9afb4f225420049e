package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nydus-go/nydusify/internal/retry"
)

// DefaultTimeout bounds each registry request (token exchange included) when
// WithTimeout is not given.
const DefaultTimeout = 30 * time.Second

// RegistryOption configures NewRegistry.
type RegistryOption func(*registryOptions) error

type registryOptions struct {
	auth      authn.Authenticator
	keychain  authn.Keychain
	transport http.RoundTripper
	timeout   time.Duration
	retry     retry.Policy
}

// WithRetry sets the retry policy of every request and of every range read
// (a body cut short is read again); the default is retry.Default.
func WithRetry(p retry.Policy) RegistryOption {
	return func(o *registryOptions) error {
		o.retry = p
		return nil
	}
}

// WithAuth uses a fixed authenticator. The default is anonymous access.
// It conflicts with WithKeychain.
func WithAuth(a authn.Authenticator) RegistryOption {
	return func(o *registryOptions) error {
		if o.keychain != nil {
			return errors.New("backend: WithAuth and WithKeychain both given")
		}
		o.auth = a
		return nil
	}
}

// WithKeychain resolves credentials for the repository from kc (for example
// authn.DefaultKeychain, the docker config). It conflicts with WithAuth.
func WithKeychain(kc authn.Keychain) RegistryOption {
	return func(o *registryOptions) error {
		if o.auth != nil {
			return errors.New("backend: WithAuth and WithKeychain both given")
		}
		o.keychain = kc
		return nil
	}
}

// WithTransport sets the base HTTP transport; the default is
// remote.DefaultTransport.
func WithTransport(t http.RoundTripper) RegistryOption {
	return func(o *registryOptions) error {
		o.transport = t
		return nil
	}
}

// WithTimeout bounds each attempt of a request, from sending it to reading
// the last byte of its body; the default is DefaultTimeout. It must be
// positive.
func WithTimeout(d time.Duration) RegistryOption {
	return func(o *registryOptions) error {
		if d <= 0 {
			return fmt.Errorf("backend: timeout %v is not positive", d)
		}
		o.timeout = d
		return nil
	}
}

// Registry reads blobs of one repository with HTTP Range GETs on
// /v2/<repo>/blobs/sha256:<id>. Plain HTTP is used only when the repository's
// registry says so (name.Insecure, or a localhost/loopback/RFC 1918 address,
// as go-containerregistry decides).
type Registry struct {
	repo name.Repository
	opts registryOptions

	mu     sync.Mutex   // guards client
	client *http.Client // authenticated for pull; nil until the first request succeeds in making it
}

var _ Backend = (*Registry)(nil)

// NewRegistry returns a backend over the blobs of repo. No request is made
// until a blob is read; the token exchange happens then, under the request's
// timeout, and is retried on the next read if it fails.
func NewRegistry(repo name.Repository, opts ...RegistryOption) (*Registry, error) {
	o := registryOptions{transport: remote.DefaultTransport, timeout: DefaultTimeout, retry: retry.Default}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	o.transport = o.retry.Transport(o.transport)
	return &Registry{repo: repo, opts: o}, nil
}

func (r *Registry) httpClient(ctx context.Context) (*http.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		return r.client, nil
	}
	auth := r.opts.auth
	if auth == nil {
		auth = authn.Anonymous
	}
	if r.opts.keychain != nil {
		var err error
		if auth, err = r.opts.keychain.Resolve(r.repo); err != nil {
			return nil, fmt.Errorf("resolving credentials for %s: %w", r.repo, err)
		}
	}
	tr, err := transport.NewWithContext(ctx, r.repo.Registry, auth, r.opts.transport,
		[]string{r.repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticating to %s: %w", r.repo, err)
	}
	r.client = &http.Client{Transport: tr}
	return r.client, nil
}

// blobURL addresses a blob by its RAFS blob id, the hex sha256 a backend is
// asked for (nydusd's backend interface), which is the layer's digest.
func (r *Registry) blobURL(blobID string) string {
	return fmt.Sprintf("%s://%s/v2/%s/blobs/sha256:%s",
		r.repo.Registry.Scheme(), r.repo.RegistryStr(), r.repo.RepositoryStr(), blobID)
}

// do sends a request and hands the response to read, which must consume
// what it needs of the body before returning. Each attempt runs under the
// per-request timeout; faults that show only in the body (read returns an
// error retry.Retryable accepts) make the whole attempt run again.
func (r *Registry) do(ctx context.Context, method, blobID string, hdr http.Header, read func(*http.Response) error) error {
	if err := checkID(blobID); err != nil {
		return err
	}
	return r.opts.retry.Do(ctx, method+" blob "+blobID, func(ctx context.Context) error {
		return r.attempt(ctx, method, blobID, hdr, read)
	})
}

func (r *Registry) attempt(ctx context.Context, method, blobID string, hdr http.Header, read func(*http.Response) error) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	client, err := r.httpClient(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, r.blobURL(blobID), nil)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return read(resp)
}

// ReadAt implements Backend with one Range request.
func (r *Registry) ReadAt(ctx context.Context, blobID string, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading blob %s: negative offset %d", blobID, off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := r.readRange(ctx, blobID, p, off)
	if errors.Is(err, errRangeNotSatisfiable) {
		// Some registries (go-containerregistry's own) refuse a range that
		// runs past the end instead of shortening it: clip and retry.
		var size int64
		if size, err = r.Size(ctx, blobID); err != nil {
			return 0, err
		}
		if off >= size {
			return 0, io.EOF
		}
		if n, err = r.readRange(ctx, blobID, p[:size-off], off); err == nil {
			err = io.EOF
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("reading blob %s at %d+%d from %s: %w", blobID, off, len(p), r.repo, err)
	}
	return n, err
}

var errRangeNotSatisfiable = errors.New("range not satisfiable")

func (r *Registry) readRange(ctx context.Context, blobID string, p []byte, off int64) (int, error) {
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)}}
	var n int
	err := r.do(ctx, http.MethodGet, blobID, hdr, func(resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusRequestedRangeNotSatisfiable:
			return errRangeNotSatisfiable
		case http.StatusOK:
			// The server ignored Range: skip to off.
			if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
				if errors.Is(err, io.EOF) {
					return io.EOF
				}
				return err
			}
		case http.StatusPartialContent:
		default:
			return transport.CheckError(resp, http.StatusOK, http.StatusPartialContent)
		}
		// The body may legitimately be shorter than p only where the blob
		// ends: what the server announced (Content-Range, else the length
		// left after off) is what must arrive; less is a cut connection.
		want := int64(len(p))
		if announced, ok := rangeLength(resp, off); ok && announced < want {
			want = announced
		}
		var err error
		n, err = io.ReadFull(resp.Body, p[:want])
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			return retry.Temporary(fmt.Errorf("body ended after %d of %d bytes: %w", n, want, err))
		case err != nil:
			return retry.Temporary(fmt.Errorf("empty body where %d bytes were announced", want))
		case want < int64(len(p)):
			return io.EOF
		}
		return nil
	})
	return n, err
}

// rangeLength is how many bytes from off a response promises: the span of a
// 206's Content-Range, or a 200's Content-Length minus off.
func rangeLength(resp *http.Response, off int64) (int64, bool) {
	if resp.StatusCode == http.StatusPartialContent {
		var first, last int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/", &first, &last); err != nil || last < first {
			return 0, false
		}
		return last - first + 1, true
	}
	if resp.ContentLength < 0 {
		return 0, false
	}
	return max(resp.ContentLength-off, 0), true
}

// Size implements Backend with a HEAD request.
func (r *Registry) Size(ctx context.Context, blobID string) (int64, error) {
	var size int64
	err := r.do(ctx, http.MethodHead, blobID, nil, func(resp *http.Response) error {
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			return err
		}
		v := resp.Header.Get("Content-Length")
		var err error
		if size, err = strconv.ParseInt(v, 10, 64); err != nil || size < 0 {
			return fmt.Errorf("bad Content-Length %q", v)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sizing blob %s in %s: %w", blobID, r.repo, err)
	}
	return size, nil
}

// String names the backend: "registry:" and its repository.
func (r *Registry) String() string { return "registry:" + r.repo.String() }
