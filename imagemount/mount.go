// Package imagemount mounts a Nydus image the way nydusd does, in process:
// it takes the bootstrap from a file or from the bootstrap layer of an image
// (registry or OCI layout), connects the storage backend its blobs live in,
// opens one verified chunk cache per blob, serves the tree read-only with
// FUSE and, when asked, prefetches in the background.
//
// Settings come from Config, which ParseConfig fills from the nydusd v1 JSON
// users already have; FlagConfig decides between defaults, that file and
// command-line flags. It sits on top of the lazy-mount stack: imageref and
// packer (to pull the bootstrap), backend, blobcache, rafsfs.
package imagemount

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/internal/retry"
	"github.com/nydus-go/nydusify/layout"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsfs"
	"github.com/nydus-go/nydusify/registry"
)

// Options say what to mount where. MountPath and one of Bootstrap or
// Target are required.
type Options struct {
	MountPath string
	// Bootstrap is a RAFS v6 bootstrap file.
	Bootstrap string
	// Target is a Nydus image (imageref syntax: a registry reference or
	// oci:DIR[:TAG]) whose bootstrap layer is pulled. When
	// Config.Backend.Type is "", its blobs are read from where the image
	// lives: the registry repository, or the layout's blobs directory.
	Target string
	// Registry configures access to Target's registry.
	Registry registry.Options
	// Platform selects the manifest of an index; nil means the host's.
	Platform *v1.Platform
	Config   Config
	// AllowOther lets other users read the mount (kernel permission checks).
	AllowOther bool
	// Logger receives the cause of every EIO and failed fetch as a
	// warning. Nil discards (see internal/logs).
	Logger logrus.FieldLogger
}

// Info describes a mount once it is usable.
type Info struct {
	MountPath string `json:"mount_path"`
	Bootstrap string `json:"bootstrap"`
	Target    string `json:"target,omitempty"`
	Backend   string `json:"backend"`
	CacheDir  string `json:"cache_dir"`
	Blobs     int    `json:"blobs"`
	Inodes    uint64 `json:"inodes"`
	// Seconds is the time from Start to a usable mount, pulling the
	// bootstrap included.
	Seconds float64 `json:"seconds"`
}

// PrefetchResult is how a background prefetch ended.
type PrefetchResult struct {
	// Files is how many files the prefetch table named (with the files
	// below the directories it named); 0 when every chunk was prefetched.
	Files   int     `json:"files"`
	Chunks  int     `json:"chunks"`
	Seconds float64 `json:"seconds"`
	Err     error   `json:"-"`
}

// Mount is a mounted image. Close unmounts it.
type Mount struct {
	info   Info
	rd     *rafs.Reader
	srv    *fuse.Server
	caches []*blobcache.Cache
	closer []func() error // run in reverse by Close

	served     chan struct{}
	cancel     context.CancelFunc
	prefetchWG sync.WaitGroup
	prefetched chan PrefetchResult
	closeOnce  sync.Once
	closeErr   error
	detached   bool // lazily unmounted while busy: the server may still read
}

// Start mounts the image and returns once the mount is usable. Prefetch,
// when enabled, runs in the background until done or Close. The mount
// lives until Close or an external unmount (Done closes then).
func Start(ctx context.Context, opts Options) (_ *Mount, err error) {
	start := time.Now()
	if opts.MountPath == "" {
		return nil, errors.New("imagemount: no mount path")
	}
	if (opts.Bootstrap == "") == (opts.Target == "") {
		return nil, errors.New("imagemount: give a bootstrap file or a target image, not both or neither")
	}
	logger := logs.Or(opts.Logger)
	if stale, err := recoverStale(opts.MountPath); err != nil {
		return nil, err
	} else if stale {
		logger.Warnf("imagemount: detached a dead FUSE mount left at %s by a killed mount process", opts.MountPath)
	}
	m := &Mount{served: make(chan struct{})}
	defer func() {
		if err != nil {
			m.cleanup()
		}
	}()
	work, err := os.MkdirTemp("", "nydusify-mount-")
	if err != nil {
		return nil, err
	}
	m.closer = append(m.closer, func() error { return os.RemoveAll(work) })

	cfg := opts.Config
	m.info = Info{MountPath: opts.MountPath, Bootstrap: opts.Bootstrap, Target: opts.Target, CacheDir: cfg.CacheDir}
	var be backend.Backend
	if opts.Target != "" {
		m.info.Bootstrap = filepath.Join(work, "image.boot")
		if be, err = pullBootstrap(ctx, opts, m.info.Bootstrap); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	}
	if cfg.Backend.Type != "" {
		if be, err = NewBackend(cfg.Backend); err != nil {
			return nil, err
		}
	}
	if be == nil {
		return nil, errors.New("imagemount: no backend configured for the bootstrap's blobs")
	}
	m.info.Backend = describe(be)
	if c, ok := be.(io.Closer); ok {
		m.closer = append(m.closer, c.Close)
	}

	boot, err := m.mapBootstrap(m.info.Bootstrap)
	if err != nil {
		return nil, err
	}
	if m.rd, err = rafs.Open(bytes.NewReader(boot), int64(len(boot))); err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", m.info.Bootstrap, err)
	}
	m.info.Blobs, m.info.Inodes = len(m.rd.Blobs), m.rd.Super.Inos
	verifyMeta := cfg.VerifyMetadata
	if verifyMeta && m.rd.Version() != 5 {
		logger.Infof("digest_validate / --verify-metadata: a RAFS v%d bootstrap has no inode digests; chunks are verified as always", m.rd.Version())
		verifyMeta = false
	}

	if m.info.CacheDir == "" {
		m.info.CacheDir = filepath.Join(work, "cache")
	}
	amplify := cfg.Amplify
	if amplify == 0 {
		amplify = -1 // blobcache's "one chunk per request"
	}
	// The caches fetch chunk bytes through be themselves; the image only
	// verifies them, against the bootstrap's chunk table.
	img, err := rafs.NewImage(m.rd, nil)
	if err != nil {
		return nil, err
	}
	for i, e := range m.rd.Blobs {
		c, err := blobcache.Open(ctx, m.info.CacheDir, be, img, i, blobcache.Options{Logger: logger, Amplify: amplify})
		if err != nil {
			return nil, fmt.Errorf("opening the cache of blob %s: %w", e.BlobID, err)
		}
		m.caches = append(m.caches, c)
		m.closer = append(m.closer, c.Close)
	}
	m.srv, err = rafsfs.Mount(opts.MountPath, m.rd, m.caches, rafsfs.Options{
		Logger: logger, AllowOther: opts.AllowOther, HideXattrs: !cfg.Xattrs,
		VerifyMetadata: verifyMeta,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		m.srv.Wait()
		close(m.served)
	}()
	m.info.Seconds = time.Since(start).Seconds()

	if cfg.Prefetch.Enable {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		m.cancel = cancel
		m.prefetched = make(chan PrefetchResult, 1)
		m.prefetchWG.Add(1)
		go func() {
			defer m.prefetchWG.Done()
			m.prefetched <- m.prefetch(pctx, cfg.Prefetch)
		}()
	}
	return m, nil
}

// Info describes the mount.
func (m *Mount) Info() Info { return m.info }

// Done is closed when the filesystem stops being served: after Close, or
// when it is unmounted from outside.
func (m *Mount) Done() <-chan struct{} { return m.served }

// Prefetched delivers the result of the background prefetch once it ends;
// it is nil when prefetch is off.
func (m *Mount) Prefetched() <-chan PrefetchResult { return m.prefetched }

// Close stops prefetching, unmounts (if still mounted; lazily if busy),
// closes the caches, making what was fetched durable, and removes
// temporary files.
func (m *Mount) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.cancel != nil {
			m.cancel()
		}
		m.prefetchWG.Wait()
		select {
		case <-m.served:
		default:
			errs = append(errs, m.unmount())
		}
		errs = append(errs, m.cleanup())
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// mapBootstrap maps the bootstrap file read-only: metadata requests then
// decode from memory, as nydusd's direct mode does, instead of costing a
// pread each, and nothing is read until it is asked for. The mapping is
// released by cleanup unless the mount was detached while still serving.
func (m *Mount) mapBootstrap(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening bootstrap: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 || st.Size() > math.MaxInt32 {
		return nil, fmt.Errorf("bootstrap %s: size %d is not that of a RAFS bootstrap", path, st.Size())
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping bootstrap %s: %w", path, err)
	}
	m.closer = append(m.closer, func() error {
		if m.detached {
			return nil
		}
		return unix.Munmap(data)
	})
	return data, nil
}

// unmount unmounts and waits until the server has stopped. When the mount
// is busy (a process has a file or its working directory in it), it is
// detached lazily instead, so nothing stays mounted; the server then stops
// once the last user is gone, and reads after Close fail with EIO.
func (m *Mount) unmount() error {
	err := m.srv.Unmount()
	if err == nil {
		<-m.served
		return nil
	}
	if derr := unix.Unmount(m.info.MountPath, unix.MNT_DETACH); derr != nil {
		return fmt.Errorf("unmounting %s: %w (lazy unmount: %v)", m.info.MountPath, err, derr)
	}
	m.detached = true
	return nil
}

// cleanup runs the closers, newest first.
func (m *Mount) cleanup() error {
	var errs []error
	for i := len(m.closer) - 1; i >= 0; i-- {
		errs = append(errs, m.closer[i]())
	}
	m.closer = nil
	return errors.Join(errs...)
}

// pullBootstrap writes the bootstrap of opts.Target to path and returns the
// backend serving the image's blobs where it lives.
func pullBootstrap(ctx context.Context, opts Options, path string) (backend.Backend, error) {
	ref, err := imageref.Parse(opts.Target)
	if err != nil {
		return nil, err
	}
	pimg, err := imageref.OpenImage(ctx, opts.Target, opts.Registry, opts.Platform)
	if err != nil {
		return nil, err
	}
	img := pimg.Image
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 || m.Layers[len(m.Layers)-1].Annotations[packer.AnnotationNydusBootstrap] != "true" {
		return nil, fmt.Errorf("%s is not a Nydus image: its last layer lacks %s=true", opts.Target, packer.AnnotationNydusBootstrap)
	}
	boot := registry.RetryingLayer(ctx, layers[len(layers)-1], opts.Registry.Policy())
	if _, err := packer.ExtractBootstrap(boot, path); err != nil {
		return nil, fmt.Errorf("pulling the bootstrap of %s: %w", opts.Target, err)
	}
	switch ref.Kind {
	case imageref.Registry:
		nref, err := opts.Registry.Reference(ref.Name)
		if err != nil {
			return nil, err
		}
		tr, err := opts.Registry.Transport()
		if err != nil {
			return nil, err
		}
		return backend.NewRegistry(nref.Context(), backend.WithKeychain(opts.Registry.Credentials()), backend.WithTransport(tr),
			backend.WithRetry(opts.Registry.Policy()))
	case imageref.OCILayout:
		return backend.NewLocalFS(layout.BlobDir(ref.Path)), nil
	}
	return nil, nil // the configured backend must serve the blobs
}

// NewBackend connects the backend c describes.
func NewBackend(c BackendConfig) (backend.Backend, error) {
	switch c.Type {
	case "localfs":
		if c.Dir == "" {
			return nil, errors.New(`localfs backend needs "dir"`)
		}
		return backend.NewLocalFS(c.Dir), nil
	case "registry":
		ro := registry.Options{Insecure: c.SkipVerify}
		var nopts []name.Option
		switch c.Scheme {
		case "http":
			ro.PlainHTTP = true
			nopts = append(nopts, name.Insecure)
		case "", "https":
		default:
			return nil, fmt.Errorf("registry scheme %q: want https or http", c.Scheme)
		}
		repo, err := name.NewRepository(c.Host+"/"+c.Repo, nopts...)
		if err != nil {
			return nil, fmt.Errorf("registry backend: %w", err)
		}
		tr, err := ro.Transport()
		if err != nil {
			return nil, err
		}
		bopts := []backend.RegistryOption{backend.WithTransport(tr)}
		switch {
		case c.Auth != "" && c.Token != "":
			return nil, errors.New(`registry backend: give "auth" or "registry_token", not both`)
		case c.Auth != "":
			raw, err := base64.StdEncoding.DecodeString(c.Auth)
			user, pass, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				return nil, errors.New(`registry backend: "auth" is not base64 of "user:password"`)
			}
			bopts = append(bopts, backend.WithAuth(authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})))
		case c.Token != "":
			bopts = append(bopts, backend.WithAuth(authn.FromConfig(authn.AuthConfig{RegistryToken: c.Token})))
		default:
			bopts = append(bopts, backend.WithKeychain(authn.DefaultKeychain))
		}
		if c.TimeoutSeconds > 0 {
			bopts = append(bopts, backend.WithTimeout(time.Duration(c.TimeoutSeconds)*time.Second))
		}
		if c.Attempts > 0 {
			p := retry.Default
			p.Attempts = c.Attempts
			bopts = append(bopts, backend.WithRetry(p))
		}
		return backend.NewRegistry(repo, bopts...)
	case "s3":
		s := c.S3
		s.Timeout = time.Duration(c.TimeoutSeconds) * time.Second
		if c.Attempts > 0 {
			s.Retry.Attempts = c.Attempts
		}
		// NewS3 sends nothing; the context only bounds reading AWS config files.
		return backend.NewS3(context.Background(), s)
	}
	return nil, fmt.Errorf("backend type %q: want localfs, registry or s3", c.Type)
}

// describe names a backend for Info.
func describe(be backend.Backend) string {
	if s, ok := be.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", be)
}
