package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// rawTar writes headers as given (the body of a regular file is its
// Linkname field's bytes repeated Size/len times, to keep cases short).
func rawTar(t *testing.T, hdrs ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = h.Linkname
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tailReader records the lowest offset read.
type tailReader struct {
	r   io.ReaderAt
	mu  sync.Mutex
	low int64
}

func (t *tailReader) ReadAt(p []byte, off int64) (int, error) {
	t.mu.Lock()
	t.low = min(t.low, off)
	t.mu.Unlock()
	return t.r.ReadAt(p, off)
}

// TestRestoreLayer: layers restored from their blobs merge into the same
// bootstrap, byte for byte, as the layers fresh from their tars, reading
// only the blobs' tails; the stack covers what a bootstrap alone does not
// say (directories the tar described that look implied, a root entry, the
// directories a layer's symlink resolution assumed) and whiteouts,
// hardlinks, symlinked parents, devices, xattrs, multi-chunk and
// deduplicated files. Without the hints the bootstrap differs, which shows
// the case is covered; other options are refused.
func TestRestoreLayer(t *testing.T) {
	tmp := t.TempDir()
	opts := rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x1000}
	epoch := time.Unix(0, 0)
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB, 4 chunks of 4 KiB, all the same
	l1 := rawTar(t,
		tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 3},
		tar.Header{Name: "usr/lib/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "usr/lib/big", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: big + "tail"},
		tar.Header{Name: "usr/lib/copy", Typeflag: tar.TypeReg, Mode: 0o600, Linkname: big},
		tar.Header{Name: "usr/lib/hard", Typeflag: tar.TypeLink, Linkname: "usr/lib/copy"},
		tar.Header{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib"},
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1},
		tar.Header{Name: "etc/conf", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "a=1",
			PAXRecords: map[string]string{"SCHILY.xattr.user.b": "2", "SCHILY.xattr.user.a": "1"}, Format: tar.FormatPAX},
		tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "gone", Typeflag: tar.TypeReg, Linkname: "bye"})
	l2 := rawTar(t,
		// A described directory with an implied one's look: it resets
		// etc's metadata; an implied usr (below) keeps layer 1's.
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
		tar.Header{Name: "usr/new/deep/f", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "implied parents"},
		tar.Header{Name: "lib/through", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "lands in usr/lib"},
		tar.Header{Name: ".wh.gone", Typeflag: tar.TypeReg},
		tar.Header{Name: "x/.wh..wh..opq", Typeflag: tar.TypeReg},
		tar.Header{Name: "x/new", Typeflag: tar.TypeReg, Linkname: big})
	l3 := rawTar(t,
		// A root entry with an implied directory's look, and a relative
		// symlink whose ".." leaves the implied directory q.
		tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
		tar.Header{Name: "q/l", Typeflag: tar.TypeSymlink, Linkname: "../x"},
		tar.Header{Name: "q/l/via", Typeflag: tar.TypeReg, Linkname: "into x"})

	type built struct {
		layer *rafsbuild.Layer
		hints rafsbuild.LayerHints
		path  string
	}
	var fresh []built
	for i, data := range [][]byte{l1, l2, l3} {
		f, err := os.CreateTemp(tmp, "layer-*")
		if err != nil {
			t.Fatal(err)
		}
		l, err := rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), f, opts, nil)
		f.Close()
		if err != nil {
			t.Fatalf("layer %d: %v", i+1, err)
		}
		p := filepath.Join(tmp, l.Digest)
		if err := os.Rename(f.Name(), p); err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, built{l, l.Hints(), p})
	}
	if h := fresh[1].hints; len(h.Described) != 1 || h.Described[0] != "etc" {
		t.Errorf("layer 2 hints %+v, want the described etc", h)
	}
	if h := fresh[2].hints; len(h.Described) != 1 || h.Described[0] != "" || len(h.Assumed) != 1 || h.Assumed[0] != "q" {
		t.Errorf("layer 3 hints %+v, want the described root and the assumed q", h)
	}

	restore := func(withHints bool, o rafsbuild.Options) ([]*rafsbuild.Layer, error) {
		var out []*rafsbuild.Layer
		for _, b := range fresh {
			f, err := os.Open(b.path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var h rafsbuild.LayerHints
			if withHints {
				h = b.hints
			}
			tr := &tailReader{r: f, low: b.layer.Size}
			l, err := rafsbuild.RestoreLayer(tr, b.layer.Size, b.layer.Digest, h, o)
			if err != nil {
				return nil, err
			}
			// Chunk data ends where image.blob's TOC entry says; nothing
			// below that may be read.
			toc, _, err := rafs.ReadTOC(f, b.layer.Size, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(toc) > 0 && toc[0].Name == rafs.TOCImageBlob && uint64(tr.low) < toc[0].CompressedSize {
				t.Errorf("restoring %s read at %d, inside the chunk data (%d bytes)", b.layer.Digest, tr.low, toc[0].CompressedSize)
			}
			if !bytes.Equal(l.BlobMeta, b.layer.BlobMeta) || l.Digest != b.layer.Digest || l.Size != b.layer.Size ||
				l.Stats.Entries != b.layer.Stats.Entries || l.Stats.BlobChunks != b.layer.Stats.BlobChunks {
				t.Errorf("restored layer %s: meta %d bytes (want %d), stats %+v (want %+v)",
					b.layer.Digest, len(l.BlobMeta), len(b.layer.BlobMeta), l.Stats, b.layer.Stats)
			}
			out = append(out, l)
		}
		return out, nil
	}
	restored, err := restore(true, opts)
	if err != nil {
		t.Fatal(err)
	}
	unhinted, err := restore(false, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []rafsbuild.Options{
		{Compressor: rafs.CompressZstd, ChunkSize: 0x2000},
		{Compressor: rafs.CompressLZ4Block, ChunkSize: 0x1000},
		{Compressor: rafs.CompressZstd, ChunkSize: 0x1000, Digester: rafs.DigestSha256},
	} {
		if _, err := restore(true, o); err == nil || !strings.Contains(err.Error(), "other options") {
			t.Errorf("restoring with %+v: %v, want a refusal naming other options", o, err)
		}
	}

	want, err := rafsbuild.Merge([]*rafsbuild.Layer{fresh[0].layer, fresh[1].layer, fresh[2].layer}, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rafsbuild.Merge(restored, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bootstrap, want.Bootstrap) || strings.Join(got.Blobs, ",") != strings.Join(want.Blobs, ",") {
		t.Errorf("merge of restored layers differs: %d bytes, blobs %v; fresh: %d bytes, blobs %v",
			len(got.Bootstrap), got.Blobs, len(want.Bootstrap), want.Blobs)
	}
	if len(want.Blobs) != 3 {
		t.Errorf("blob table %v, want the three layers", want.Blobs)
	}
	if bad, err := rafsbuild.Merge(unhinted, opts); err == nil && bytes.Equal(bad.Bootstrap, want.Bootstrap) {
		t.Error("without the hints the merge is the same: the hinted cases are not covered")
	}
	// The merged tree as extract reads it, against the stack's meaning.
	tree := treeOf(t, tmp, got)
	for p, v := range map[string]string{
		"usr/lib/through": "f:lands in usr/lib", "usr/new/deep/f": "f:implied parents", "lib": "l:usr/lib",
		"x/via": "f:into x", "x/new": "f:" + big, "q/l": "l:../x", "etc/conf": "f:a=1",
	} {
		if tree[p] != v {
			t.Errorf("%s: %.40q, want %.40q", p, tree[p], v)
		}
	}
	for _, p := range []string{"gone", "x/.wh..wh..opq", ".wh.gone"} {
		if _, ok := tree[p]; ok {
			t.Errorf("%s is in the merged tree", p)
		}
	}

	// A blob that is not a layer blob, or is cut short, is refused.
	data, err := os.ReadFile(fresh[0].path)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"cut": data[:len(data)-100], "empty": nil, "zeros": make([]byte, 8192)} {
		if _, err := rafsbuild.RestoreLayer(bytes.NewReader(b), int64(len(b)), "x", rafsbuild.LayerHints{}, opts); err == nil {
			t.Errorf("%s blob restored", name)
		} else if !errors.Is(err, rafs.ErrCorrupt) && !strings.Contains(err.Error(), "TOC") {
			t.Logf("%s: %v", name, err)
		}
	}
}

// FuzzRestoreLayer feeds RestoreLayer blobs whose inline bootstrap is the
// fuzz input (the TOC around it is made valid, so mutation reaches the
// bootstrap rather than its digest): it must fail cleanly or give a layer
// that merges without panicking.
func FuzzRestoreLayer(f *testing.F) {
	opts := rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x1000}
	tmp := f.TempDir()
	for _, data := range [][]byte{
		tarOf(f, tar.FormatPAX, dir("./"), file("./a", strings.Repeat("x", 9000)), link("./b", "./a"), symlink("./c", "a")),
		tarOf(f, tar.FormatGNU, file("d/.wh..wh..opq", ""), file("d/e", "y"), tarEnt{name: "dev/c", typ: tar.TypeChar, mode: 0o600, major: 1, minor: 3}),
	} {
		f.Add(inlineBootstrap(f, tmp, data, opts))
	}
	f.Fuzz(func(t *testing.T, boot []byte) {
		var blob []byte
		blob = append(append(blob, boot...), rafs.TarHeader(rafs.TOCImageBoot, uint64(len(boot)))...)
		toc := rafs.AppendTOCEntry(nil, rafs.TOCEntry{Flags: rafs.CompressNone.TOCFlag(), Name: rafs.TOCImageBoot,
			Digest: sha256.Sum256(boot), CompressedSize: uint64(len(boot)), UncompressedSize: uint64(len(boot))})
		blob = append(append(blob, toc...), rafs.TarHeader(rafs.TOCName, uint64(len(toc)))...)
		l, err := rafsbuild.RestoreLayer(bytes.NewReader(blob), int64(len(blob)), "d", rafsbuild.LayerHints{}, opts)
		if err != nil {
			return
		}
		rafsbuild.Merge([]*rafsbuild.Layer{l}, opts)
	})
}

// inlineBootstrap builds a layer from tar data and returns the bootstrap
// its blob carries.
func inlineBootstrap(t testing.TB, dir string, data []byte, opts rafsbuild.Options) []byte {
	f, err := os.CreateTemp(dir, "layer-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), f, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	toc, _, err := rafs.ReadTOC(f, l.Size, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range toc {
		if e.Name == rafs.TOCImageBoot {
			b, err := rafs.ReadTOCData(f, e, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("no bootstrap in the layer blob")
	return nil
}
