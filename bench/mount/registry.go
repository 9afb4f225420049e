package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nydus-go/nydusify/internal/atomicfile"
)

// reg is a running registry.
type reg struct {
	kind string // what serves it
	host string // 127.0.0.1:PORT
	stop func()
}

// startRegistry starts Debian's docker-registry with filesystem storage
// (configured as internal/testenv does) when it is installed, else
// go-containerregistry's registry in-process.
func (b *bench) startRegistry() (*reg, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return b.startInProcessRegistry()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	host := l.Addr().String()
	l.Close()
	dir := b.newPath("registry")
	storage := filepath.Join(dir, "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp: {addr: %s}\n",
		storage, host)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting docker-registry: %w", err)
	}
	r := &reg{kind: "docker-registry " + bin, host: host, stop: func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				b.logf("started %s on %s", r.kind, host)
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("docker-registry on %s did not answer within 10 s: %v%s", host, err, logTail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startInProcessRegistry serves go-containerregistry's registry on
// 127.0.0.1 with blobs stored as files.
func (b *bench) startInProcessRegistry() (*reg, error) {
	h := fileBlobs(b.newPath("registry"))
	if err := os.Mkdir(string(h), 0o755); err != nil {
		return nil, err
	}
	srv := httptest.NewServer(registry.New(registry.WithBlobHandler(h), registry.Logger(log.New(io.Discard, "", 0))))
	r := &reg{kind: "go-containerregistry pkg/registry (in-process)", host: srv.Listener.Addr().String(), stop: srv.Close}
	b.logf("started %s on %s", r.kind, r.host)
	return r, nil
}

// fileBlobs is a registry.BlobHandler keeping each blob in a file named by
// its hex digest. Unlike registry.NewDiskBlobHandler it does not re-hash the
// blob on every request, and serves ranges from the file.
type fileBlobs string

func (d fileBlobs) path(h v1.Hash) string { return filepath.Join(string(d), h.Hex) }

func (d fileBlobs) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(d.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, registry.ErrNotFound
	}
	return f, err
}

func (d fileBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	st, err := os.Stat(d.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, registry.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Put stores the blob; the registry checks its digest while it is read.
func (d fileBlobs) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	return atomicfile.Write(d.path(h), 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, rc)
		return err
	})
}
