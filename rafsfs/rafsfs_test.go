package rafsfs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/rafsfs"
)

// image is a built fixture: the source tree and the build output.
type image struct {
	src, out string
	rd       *rafs.Reader
}

func buildImage(t *testing.T, opts rafsbuild.Options) *image {
	t.Helper()
	dir := t.TempDir()
	img := &image{src: filepath.Join(dir, "src"), out: filepath.Join(dir, "out")}
	if err := fstree.Make(img.src, fstree.Options{Root: os.Geteuid() == 0}); err != nil {
		t.Fatal(err)
	}
	res, err := rafsbuild.BuildDir(context.Background(), img.src, img.out, "img", opts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(img.out, res.Bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if img.rd, err = rafs.Open(f, res.BootSize); err != nil {
		t.Fatal(err)
	}
	return img
}

// countingBackend counts the requests that reach the backend it wraps.
type countingBackend struct {
	backend.Backend
	reads, sizes atomic.Int64
}

func (c *countingBackend) ReadAt(ctx context.Context, id string, p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.Backend.ReadAt(ctx, id, p, off)
}

func (c *countingBackend) Size(ctx context.Context, id string) (int64, error) {
	c.sizes.Add(1)
	return c.Backend.Size(ctx, id)
}

// logBuffer collects log lines from the filesystem and cache.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// mount opens one cache per blob in cacheDir over be and mounts the image;
// everything is unmounted and closed in t.Cleanup, or by the returned func,
// and a mount left behind fails the test.
func mount(t *testing.T, img *image, be backend.Backend, cacheDir string, logger logrus.FieldLogger) (string, func()) {
	t.Helper()
	var caches []*blobcache.Cache
	closeCaches := func() {
		for _, c := range caches {
			c.Close()
		}
	}
	rimg, err := rafs.NewImage(img.rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range img.rd.Blobs {
		c, err := blobcache.Open(context.Background(), cacheDir, be, rimg, i, blobcache.Options{Logger: logger})
		if err != nil {
			closeCaches()
			t.Fatal(err)
		}
		caches = append(caches, c)
	}
	mnt := t.TempDir()
	srv, err := rafsfs.Mount(mnt, img.rd, caches, rafsfs.Options{Logger: logger})
	if err != nil {
		closeCaches()
		t.Fatal(err)
	}
	m := mounttest.Adopt(t, mnt, func() error {
		defer closeCaches()
		return srv.Unmount()
	})
	return mnt, func() {
		if err := m.Close(); err != nil {
			t.Errorf("unmounting: %v", err)
		}
	}
}

func compareTree(t *testing.T, want, got string) {
	t.Helper()
	mounttest.RequireSame(t, want, got, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
}

// TestMountTree mounts an image over a localfs backend, compares the mount
// with the source tree, then remounts on the same cache directory and checks
// that reading everything again makes no backend request.
func TestMountTree(t *testing.T) {
	testenv.RequireFUSE(t)
	img := buildImage(t, rafsbuild.Options{Compressor: rafs.CompressZstd, Digester: rafs.DigestBlake3})
	cacheDir := t.TempDir()
	logged := &logBuffer{}
	logger := logs.New(logged)

	first := &countingBackend{Backend: backend.NewLocalFS(img.out)}
	mnt, unmount := mount(t, img, first, cacheDir, logger)
	compareTree(t, img.src, mnt)
	requireReadOnly(t, img, mnt)
	unmount()
	if first.reads.Load() == 0 {
		t.Error("the first mount read nothing from the backend")
	}
	t.Logf("first mount: %d backend reads, %d size requests", first.reads.Load(), first.sizes.Load())

	second := &countingBackend{Backend: backend.NewLocalFS(img.out)}
	mnt2, _ := mount(t, img, second, cacheDir, logger)
	compareTree(t, img.src, mnt2)
	if n, s := second.reads.Load(), second.sizes.Load(); n != 0 || s != 0 {
		t.Errorf("the second mount made %d reads and %d size requests to the backend; want none", n, s)
	}
	if l := logged.String(); l != "" {
		t.Errorf("unexpected log output:\n%s", l)
	}
}

// requireReadOnly: the mount is read-only at the mount level (statfs
// flags), writes and creates fail with EROFS, and statfs counts the image.
func requireReadOnly(t *testing.T, img *image, mnt string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if st.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("statfs flags %#x lack ST_RDONLY", st.Flags)
	}
	if st.Files != img.rd.Super.Inos || st.Blocks == 0 {
		t.Errorf("statfs: %d files, %d blocks; want %d files", st.Files, st.Blocks, img.rd.Super.Inos)
	}
	var file string
	img.rd.Walk(func(p string, n *rafs.Node) error {
		if file == "" && n.IsReg() {
			file = p
		}
		return nil
	})
	if _, err := os.OpenFile(filepath.Join(mnt, file), os.O_RDWR, 0); !errors.Is(err, unix.EROFS) {
		t.Errorf("opening %s for writing: %v, want EROFS", file, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("creating a file: %v, want EROFS", err)
	}
}

// TestCorruptChunk flips one byte of a stored chunk: the file holding it
// fails with EIO, the failure is logged, and other files still read.
func TestCorruptChunk(t *testing.T) {
	testenv.RequireFUSE(t)
	// Uncompressed, so the flipped byte reaches the digest check.
	img := buildImage(t, rafsbuild.Options{Compressor: rafs.CompressNone, Digester: rafs.DigestSha256})
	n, err := img.rd.Lookup("/data/random.bin")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := img.rd.Chunks(n)
	if err != nil {
		t.Fatal(err)
	}
	e := img.rd.Blobs[addrs[1].BlobIndex]
	blobPath := filepath.Join(img.out, e.BlobID)
	f, err := os.Open(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	rimg, err := rafs.NewImage(img.rd, rafs.BlobOpenerFunc(func(int, rafs.BlobEntry) (io.ReaderAt, int64, error) {
		return f, st.Size(), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	br, err := rimg.Blob(int(addrs[1].BlobIndex))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := br.Chunk(addrs[1].CIIndex)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(ch.CompressedOffset) + 1000
	blob, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	blob[at] ^= 0x40
	if err := os.WriteFile(blobPath, blob, 0o644); err != nil {
		t.Fatal(err)
	}

	logged := &logBuffer{}
	mnt, _ := mount(t, img, backend.NewLocalFS(img.out), t.TempDir(), logs.New(logged))
	for range 2 { // a failure is not cached: the second read fails the same way
		_, err = os.ReadFile(filepath.Join(mnt, "data/random.bin"))
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("reading the corrupted file: %v; want EIO", err)
		}
	}
	if l := logged.String(); !bytes.Contains([]byte(l), []byte("digest mismatch")) {
		t.Errorf("the log does not name the digest mismatch:\n%s", l)
	}
	// The first chunk of the same file is intact and still readable.
	rf, err := os.Open(filepath.Join(mnt, "data/random.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	head := make([]byte, 4096)
	want, _ := os.ReadFile(filepath.Join(img.src, "data/random.bin"))
	if _, err := rf.ReadAt(head, 0); err != nil || !bytes.Equal(head, want[:4096]) {
		t.Errorf("reading the intact first chunk: %v", err)
	}
	for _, p := range []string{"dedup/a.bin", "dedup/b.bin"} {
		got, err := os.ReadFile(filepath.Join(mnt, p))
		want, _ := os.ReadFile(filepath.Join(img.src, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("reading intact %s: %v (equal %v)", p, err, bytes.Equal(got, want))
		}
	}
}

// TestConcurrentReaders reads one multi-chunk file from several goroutines
// at once, in different orders and read sizes, through a cold cache.
func TestConcurrentReaders(t *testing.T) {
	testenv.RequireFUSE(t)
	img := buildImage(t, rafsbuild.Options{Compressor: rafs.CompressZstd, Digester: rafs.DigestBlake3, ChunkSize: 0x10000})
	be := &countingBackend{Backend: backend.NewLocalFS(img.out)}
	mnt, _ := mount(t, img, be, t.TempDir(), nil)
	want, err := os.ReadFile(filepath.Join(img.src, "data/random.bin"))
	if err != nil {
		t.Fatal(err)
	}
	const readers = 8
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(filepath.Join(mnt, "data/random.bin"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			got := make([]byte, len(want))
			step := 4096 * (r + 1) * 3
			// Odd readers go backwards, so they meet the others mid-file.
			for i := range (len(want) + step - 1) / step {
				off := i * step
				if r%2 == 1 {
					off = (len(want) + step - 1) / step * step
					off -= (i + 1) * step
				}
				end := min(off+step, len(want))
				if _, err := f.ReadAt(got[off:end], int64(off)); err != nil && err != io.EOF {
					errs <- err
					return
				}
			}
			if !bytes.Equal(got, want) {
				errs <- errors.New("content differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d backend reads for %d bytes", be.reads.Load(), len(want))
}
