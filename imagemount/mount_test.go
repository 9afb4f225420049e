package imagemount_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/mountcheck"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// build makes the fstree sample tree and builds it with 64 KiB chunks.
func build(t *testing.T) (src, out string) {
	t.Helper()
	dir := t.TempDir()
	src, out = filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rafsbuild.BuildDir(context.Background(), src, out, "img",
		rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x10000}); err != nil {
		t.Fatal(err)
	}
	return src, out
}

// start mounts with mounttest.FUSE: unmounted when the test ends, and the
// test fails if the mount is left behind.
func start(t *testing.T, opts imagemount.Options) *imagemount.Mount {
	t.Helper()
	return mounttest.FUSE(t, opts).Image()
}

func requireSame(t *testing.T, want, got string) {
	t.Helper()
	mounttest.RequireSame(t, want, got, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
}

// TestPrefetchThenOffline prefetches every chunk in the background, checks
// the caches hold them all, then remounts with the same cache directory and
// a backend that has no blobs: the whole tree still reads and equals the
// source, so prefetch and the durable chunk map did their work.
func TestPrefetchThenOffline(t *testing.T) {
	testenv.RequireFUSE(t)
	src, out := build(t)
	cache := t.TempDir()
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: out}
	cfg.CacheDir = cache
	cfg.Prefetch = imagemount.PrefetchConfig{Enable: true, Workers: 3, All: true}
	mc, err := mountcheck.FUSE(context.Background(), imagemount.Options{MountPath: t.TempDir(), Bootstrap: filepath.Join(out, "img.meta"), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	m := mc.Image()
	info := m.Info()
	if info.Blobs != 1 || info.Inodes == 0 || info.Seconds <= 0 || info.CacheDir != cache || !strings.HasPrefix(info.Backend, "localfs:") {
		t.Errorf("Info = %+v", info)
	}
	var res imagemount.PrefetchResult
	select {
	case res = <-m.Prefetched():
	case <-time.After(time.Minute):
		t.Fatal("prefetch did not finish within a minute")
	}
	referenced := m.TableChunks(0)
	if res.Err != nil || res.Chunks != len(referenced) || res.Files != 0 {
		t.Errorf("prefetch = %+v, want all %d chunks", res, len(referenced))
	}
	for _, i := range referenced {
		if !m.ChunkCached(0, i) {
			t.Fatalf("chunk %d not cached after prefetch", i)
		}
	}
	// mountcheck's Close: imagemount's, then nothing may be left mounted.
	if err := mc.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.Backend.Dir = t.TempDir() // no blobs: every read must come from the cache
	cfg.Prefetch.Enable = false
	m2 := start(t, imagemount.Options{Bootstrap: filepath.Join(out, "img.meta"), Config: cfg})
	requireSame(t, src, m2.Info().MountPath)
}

// TestHideXattrs: with Xattrs off (nydusd's default without enable_xattr)
// the mount reports no xattr support, so the kernel stops asking; with it
// on, the source's show.
func TestHideXattrs(t *testing.T) {
	testenv.RequireFUSE(t)
	src, out := build(t)
	var withXattr string
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if n, _ := unix.Llistxattr(p, nil); n > 0 && withXattr == "" {
			withXattr, _ = filepath.Rel(src, p)
		}
		return nil
	})
	if withXattr == "" {
		t.Fatal("the sample tree has no file with xattrs")
	}
	for _, show := range []bool{false, true} {
		cfg := imagemount.DefaultConfig()
		cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: out}
		cfg.Xattrs = show
		m := start(t, imagemount.Options{Bootstrap: filepath.Join(out, "img.meta"), Config: cfg})
		n, err := unix.Llistxattr(filepath.Join(m.Info().MountPath, withXattr), nil)
		if show && (err != nil || n == 0) || !show && !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("Xattrs %v: listxattr of %s = %d, %v; want xattrs, or EOPNOTSUPP when hidden", show, withXattr, n, err)
		}
	}
}

func TestStartErrors(t *testing.T) {
	_, out := build(t)
	boot := filepath.Join(out, "img.meta")
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: out}
	// A file of the right size whose EROFS magic at offset 1024 is wrong.
	notBoot := filepath.Join(t.TempDir(), "output.json")
	if err := os.WriteFile(notBoot, bytes.Repeat([]byte("{}"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts imagemount.Options
		want string
	}{
		{imagemount.Options{Bootstrap: boot, Config: cfg}, "no mount path"},
		{imagemount.Options{MountPath: t.TempDir(), Config: cfg}, "bootstrap file or a target"},
		{imagemount.Options{MountPath: t.TempDir(), Bootstrap: boot, Target: "x", Config: cfg}, "not both"},
		{imagemount.Options{MountPath: t.TempDir(), Bootstrap: boot}, "no backend"},
		{imagemount.Options{MountPath: t.TempDir(), Bootstrap: filepath.Join(out, "missing"), Config: cfg}, "opening bootstrap"},
		{imagemount.Options{MountPath: t.TempDir(), Bootstrap: notBoot, Config: cfg}, "not a RAFS bootstrap"},
		// An empty directory is no OCI layout: it has no index.json.
		{imagemount.Options{MountPath: t.TempDir(), Target: "oci:" + t.TempDir(), Config: cfg}, "reading index.json"},
	} {
		m, err := imagemount.Start(context.Background(), tc.opts)
		if err == nil {
			m.Close()
			t.Errorf("imagemount.Start(%+v) succeeded", tc.opts)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagemount.Start(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// TestCloseBusy: closing a mount that a file is still open in detaches it
// lazily, so nothing stays mounted.
func TestCloseBusy(t *testing.T) {
	testenv.RequireFUSE(t)
	_, out := build(t)
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: out}
	m, err := mountcheck.FUSE(context.Background(), imagemount.Options{MountPath: t.TempDir(), Bootstrap: filepath.Join(out, "img.meta"), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(filepath.Join(m.Dir(), "data"))
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	defer held.Close()
	// imagemount's Close must detach the busy mount: a mount left behind
	// makes mountcheck's Close fail with ErrStale.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPrefetchTableFiles builds with the prefetch table naming one
// directory: prefetch fetches the chunks of the files below it and no other.
func TestPrefetchTableFiles(t *testing.T) {
	testenv.RequireFUSE(t)
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rafsbuild.BuildDir(context.Background(), src, out, "img",
		rafsbuild.Options{ChunkSize: 0x10000, PrefetchPatterns: []string{"/data"}}); err != nil {
		t.Fatal(err)
	}
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: out}
	cfg.Amplify = 0 // one chunk per request, so nothing outside /data comes along
	cfg.Prefetch = imagemount.PrefetchConfig{Enable: true, Workers: 2}
	m := start(t, imagemount.Options{Bootstrap: filepath.Join(out, "img.meta"), Config: cfg})
	res := <-m.Prefetched()
	if res.Err != nil || res.Files == 0 || res.Chunks == 0 {
		t.Fatalf("prefetch = %+v", res)
	}
	inData := map[uint32]bool{}
	err := m.Reader().Walk(func(p string, n *rafs.Node) error {
		if !n.IsReg() {
			return nil
		}
		addrs, err := m.Reader().Chunks(n)
		for _, a := range addrs {
			if strings.HasPrefix(p, "/data/") {
				inData[a.CIIndex] = true
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	referenced := m.TableChunks(0)
	for _, i := range referenced {
		if m.ChunkCached(0, i) != inData[i] {
			t.Errorf("chunk %d: cached %v, below /data %v", i, m.ChunkCached(0, i), inData[i])
		}
	}
	if len(inData) == len(referenced) {
		t.Error("every chunk is below /data: the test proves nothing")
	}
}

// TestBackendTimeoutIsEIO mounts over a registry that accepts connections
// but never answers blob requests: a read fails with EIO once the
// configured timeout passes, instead of hanging the reader.
func TestBackendTimeoutIsEIO(t *testing.T) {
	testenv.RequireFUSE(t)
	_, out := build(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			<-release
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "registry", Scheme: "http", Host: strings.TrimPrefix(srv.URL, "http://"),
		Repo: "hang", TimeoutSeconds: 1, Attempts: 1} // nydusd's retry_limit: 0
	// The blob's chunk info was saved by an earlier mount over localfs,
	// so opening the cache needs nothing from the hanging registry.
	cfg.CacheDir = t.TempDir()
	local := cfg
	local.Backend = imagemount.BackendConfig{Type: "localfs", Dir: out}
	first := start(t, imagemount.Options{Bootstrap: filepath.Join(out, "img.meta"), Config: local})
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	m := start(t, imagemount.Options{Bootstrap: filepath.Join(out, "img.meta"), Config: cfg})
	var file string
	m.Reader().Walk(func(p string, n *rafs.Node) error {
		if file == "" && n.IsReg() && n.Inode.Size > 0 {
			file = p
		}
		return nil
	})
	begin := time.Now()
	_, err := os.ReadFile(filepath.Join(m.Info().MountPath, file))
	if !errors.Is(err, syscall.EIO) || time.Since(begin) > 10*time.Second {
		t.Errorf("reading %s over a hanging registry: %v after %v; want EIO after about 1s", file, err, time.Since(begin))
	}
}
