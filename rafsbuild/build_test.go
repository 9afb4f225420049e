package rafsbuild_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

var compressors = []rafs.Compressor{rafs.CompressNone, rafs.CompressLZ4Block, rafs.CompressZstd}

var (
	srcOnce sync.Once
	srcDir  string
	srcErr  error
)

// sourceTree is the shared fstree source (with root-only objects when we are
// root), made once per test binary.
func sourceTree(t testing.TB) string {
	t.Helper()
	srcOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nydusify-src-")
		if err != nil {
			srcErr = err
			return
		}
		srcDir = filepath.Join(dir, "rootfs")
		srcErr = fstree.Make(srcDir, fstree.Options{Root: os.Geteuid() == 0})
	})
	if srcErr != nil {
		t.Fatal(srcErr)
	}
	return srcDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if srcDir != "" {
		os.RemoveAll(filepath.Dir(srcDir))
	}
	os.Exit(code)
}

func build(t testing.TB, src string, opts rafsbuild.Options) (string, *rafsbuild.Result) {
	t.Helper()
	out := t.TempDir()
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "image", opts)
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

func openImage(t testing.TB, out string) *extract.Image {
	t.Helper()
	img, err := extract.Open(filepath.Join(out, "image.meta"), out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func requireSame(t testing.TB, want, got string) {
	t.Helper()
	mounttest.RequireSame(t, want, got, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
}

// TestRoundTrip builds the source tree with every compressor, digester and a
// range of chunk sizes, extracts it with our reader (every chunk verified)
// and compares the result with the source.
func TestRoundTrip(t *testing.T) {
	src := sourceTree(t)
	for _, c := range compressors {
		for _, d := range []rafs.Digester{rafs.DigestBlake3, rafs.DigestSha256} {
			for _, cs := range []uint32{0x1000, 0x10000, 0x100000, 0x1000000} {
				opts := rafsbuild.Options{Compressor: c, Digester: d, ChunkSize: cs}
				t.Run(fmt.Sprintf("%v-%v-%#x", c, d, cs), func(t *testing.T) {
					t.Parallel()
					out, _ := build(t, src, opts)
					dst := filepath.Join(t.TempDir(), "x")
					if err := openImage(t, out).Tree(context.Background(), dst, extract.TreeOptions{Owner: os.Geteuid() == 0}); err != nil {
						t.Fatal(err)
					}
					requireSame(t, src, dst)
				})
			}
		}
	}
}

// TestKernelMount is the independent judge, for every chunk size and
// compressor: the Linux EROFS driver mounts the bootstrap with the blob
// views as devices, and the mounted tree must equal the source in content,
// type, mode, owner, size, rdev, symlink target, xattrs, hardlink groups and
// mtime; fsck.erofs must find nothing, and fsck.erofs --extract (erofs-utils'
// own reader of chunk-based files) must produce the same file contents.
// Chunk sizes other than 1 MiB reach the kernel only through the inode's
// chunk-size bits, so a writer that got those wrong fails here.
func TestKernelMount(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	src := sourceTree(t)
	for i, c := range compressors {
		for j, cs := range []uint32{0x1000, 0x4000, 0x10000, 0x100000, 0x1000000} {
			if testing.Short() && (i+j)%len(compressors) != 0 {
				// -short (make mutation runs every mutant through this
				// test) keeps a diagonal: every compressor and every
				// chunk size still reach the kernel, not every pair.
				continue
			}
			t.Run(fmt.Sprintf("%v-%#x", c, cs), func(t *testing.T) {
				out, _ := build(t, src, rafsbuild.Options{Compressor: c, ChunkSize: cs})
				img := openImage(t, out)
				views, err := img.BlobViews(context.Background(), t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				boot := filepath.Join(out, "image.meta")
				testenv.FsckEROFS(t, boot, views)
				mnt := mounttest.EROFS(t, boot, views)
				requireSame(t, src, mnt)
				requireExtracted(t, src, testenv.FsckExtract(t, boot, views))
			})
		}
	}
}

// requireExtracted compares fsck.erofs --extract output with the source.
// erofs-utils 1.5 extracts without xattrs, writes each hardlink name as its
// own file, drops setuid/setgid and does not keep directory mtimes it wrote
// into; every other field, file contents first, must match.
func requireExtracted(t testing.TB, want, got string) {
	t.Helper()
	diffs, err := treecmp.Compare(want, got, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, d := range diffs {
		switch {
		case strings.HasPrefix(d.Field, treecmp.FieldXattr+":") && d.Got == "absent":
		case d.Field == treecmp.FieldHardlinks && !strings.Contains(d.Got, " "):
		case d.Field == treecmp.FieldMode && d.Want[0] != '0' && d.Got[0] == '0' && d.Want[1:] == d.Got[1:]:
		case d.Field == treecmp.FieldMode && d.Want == "7777" && d.Got == "1777":
		default:
			if bad++; bad <= 20 {
				t.Errorf("fsck.erofs --extract: %v", d)
			}
		}
	}
}

// TestKernelMountBig adds a sparse 5 GiB file: chunk indexes beyond 4 GiB,
// a continuous-file chunk format and dedup of its zero chunks.
func TestKernelMountBig(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 5 GiB through the kernel mount; skipped with -short")
	}
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	src := filepath.Join(t.TempDir(), "big")
	if err := fstree.Make(src, fstree.Options{Big: true}); err != nil {
		t.Fatal(err)
	}
	out, res := build(t, src, rafsbuild.Options{Compressor: rafs.CompressZstd})
	if res.DedupChunks < fstree.BigSize/rafs.DefaultChunkSize-8 {
		t.Errorf("only %d chunks deduplicated in a 5 GiB sparse file", res.DedupChunks)
	}
	views, err := openImage(t, out).BlobViews(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mnt := mounttest.EROFS(t, filepath.Join(out, "image.meta"), views)
	requireSame(t, src, mnt)
}

// TestDeterministic: the same tree and options give byte-identical outputs
// whatever the number of workers.
func TestDeterministic(t *testing.T) {
	src := sourceTree(t)
	for _, c := range compressors {
		t.Run(c.String(), func(t *testing.T) {
			a, ra := build(t, src, rafsbuild.Options{Compressor: c, Workers: 1})
			b, rb := build(t, src, rafsbuild.Options{Compressor: c, Workers: 8})
			if len(ra.Blobs) != 1 || len(rb.Blobs) != 1 || ra.Blobs[0] != rb.Blobs[0] {
				t.Fatalf("blob ids differ: %v vs %v", ra.Blobs, rb.Blobs)
			}
			for _, name := range []string{"image.meta", ra.Blobs[0]} {
				x, err := os.ReadFile(filepath.Join(a, name))
				if err != nil {
					t.Fatal(err)
				}
				y, err := os.ReadFile(filepath.Join(b, name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(x, y) {
					t.Errorf("%s differs between 1 and 8 workers", name)
				}
			}
		})
	}
}

// TestDedup: the tree's repeated 1 MiB blocks and identical files are stored
// once, and output.json accounts for it.
func TestDedup(t *testing.T) {
	src := t.TempDir()
	block := bytes.Repeat([]byte("0123456789abcdef"), rafs.DefaultChunkSize/16)
	unique := bytes.Repeat([]byte("x"), 1000)
	content := append(bytes.Repeat(block, 3), unique...)
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(src, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, res := build(t, src, rafsbuild.Options{Compressor: rafs.CompressZstd})
	// 2 files × 4 chunks; unique: the repeated block and the tail.
	if res.Chunks != 8 || res.DedupChunks != 6 || res.BlobInfo[0].ChunkCount != 2 ||
		res.DedupBytes != 5*uint64(len(block))+uint64(len(unique)) {
		t.Errorf("chunks %d dedup %d (%d bytes) unique %d", res.Chunks, res.DedupChunks, res.DedupBytes, res.BlobInfo[0].ChunkCount)
	}
	data, err := os.ReadFile(filepath.Join(out, rafsbuild.OutputJSON))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"dedup_chunks": 6`) {
		t.Errorf("output.json lacks the dedup count:\n%s", data)
	}
}

// TestEmptyAndDataless: a tree without file data has no blob; the bootstrap
// alone mounts (meta_addr 0 case).
func TestEmptyAndDataless(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("empty", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	out, res := build(t, src, rafsbuild.Options{Compressor: rafs.CompressZstd})
	if len(res.Blobs) != 0 {
		t.Fatalf("blobs %v for a tree without data", res.Blobs)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 2 {
		t.Errorf("output holds %d files, want image.meta and output.json", len(ents))
	}
	dst := filepath.Join(t.TempDir(), "x")
	if err := openImage(t, out).Tree(context.Background(), dst, extract.TreeOptions{Owner: os.Geteuid() == 0}); err != nil {
		t.Fatal(err)
	}
	requireSame(t, src, dst)
	if os.Geteuid() == 0 {
		testenv.RequireEROFS(t)
		requireSame(t, src, mounttest.EROFS(t, filepath.Join(out, "image.meta"), nil))
	}
}

// TestProgress: the callback sees monotonic counts bounded by the totals.
func TestProgress(t *testing.T) {
	src := sourceTree(t)
	var mu sync.Mutex
	var seen []rafsbuild.Progress
	opts := rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x1000, ProgressInterval: time.Millisecond,
		Progress: func(p rafsbuild.Progress) {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		}}
	_, res := build(t, src, opts)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no progress reported")
	}
	for i, p := range seen {
		if p.Bytes > p.TotalBytes || p.Files > p.TotalFiles || p.TotalBytes > res.DataBytes ||
			(i > 0 && (p.Bytes < seen[i-1].Bytes || p.Files < seen[i-1].Files)) {
			t.Fatalf("progress %d: %+v (previous %+v, data %d)", i, p, seen[max(i-1, 0)], res.DataBytes)
		}
	}
}
