package packer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/internal/verify"
)

// writeRandom writes size pseudo-random bytes (seeded, never starting like gzip or zstd) to
// a new file in dir and returns its path.
func writeRandom(t *testing.T, dir, name string, size int, seed uint64) string {
	t.Helper()
	b := make([]byte, size)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rand.NewChaCha8(key).Read(b)
	if size > 0 {
		b[0] = 'N' // not a compression magic, so ggcr's peeking Uncompressed passes it through
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256File(t *testing.T, p string) v1.Hash {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func readAll(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allocatedDuring returns how many bytes f allocated on the heap.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestBlobLayer(t *testing.T) {
	dir := t.TempDir()
	path := writeRandom(t, dir, "blob", 3<<20+17, 1)
	want := sha256File(t, path)
	content, _ := os.ReadFile(path)

	l, err := BlobLayer(path)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := l.Digest()
	diffID, _ := l.DiffID()
	size, _ := l.Size()
	mt, _ := l.MediaType()
	if d != want || diffID != want || size != int64(len(content)) || mt != MediaTypeNydusBlob {
		t.Fatalf("layer %s/%s %d %s, want %s both, %d, %s", d, diffID, size, mt, want, len(content), MediaTypeNydusBlob)
	}
	// Each call opens the file afresh: reading twice, and both views, give the file.
	for i, open := range []func() (io.ReadCloser, error){l.Compressed, l.Compressed, l.Uncompressed} {
		if got := readAll(t, open); !bytes.Equal(got, content) {
			t.Errorf("read %d differs from the file", i)
		}
	}

	// A file changed after hashing fails the read instead of passing wrong bytes on.
	content[len(content)/2] ^= 1
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var verr *verify.Error
	if _, err := io.Copy(io.Discard, rc); !errors.As(err, &verr) {
		t.Fatalf("reading a changed blob = %v, want a verify.Error", err)
	}

	if _, err := BlobLayer(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "hashing blob") {
		t.Errorf("BlobLayer of a missing file = %v", err)
	}
}

// Hashing and reading a blob streams it: the heap does not grow with the file.
func TestBlobLayerStreams(t *testing.T) {
	path := writeRandom(t, t.TempDir(), "blob", 32<<20, 2)
	var l v1.Layer
	alloc := allocatedDuring(func() {
		var err error
		if l, err = BlobLayer(path); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
		}
	})
	if alloc > 1<<20 {
		t.Errorf("hashing and reading a 32 MiB blob twice allocated %d bytes", alloc)
	}
}

type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr: *hdr, body: body})
	}
}

func TestBootstrapLayer(t *testing.T) {
	dir := t.TempDir()
	boot := writeRandom(t, dir, "merged.boot", 100<<10, 3)
	meta1 := writeRandom(t, dir, "m1", 4096+80, 4)
	meta2 := writeRandom(t, dir, "m2", 0, 5)
	extra := []NamedFile{{Name: strings.Repeat("a", 64) + ".blob.meta", Path: meta1}, {Name: "prefetch.files", Path: meta2}}
	work := t.TempDir()

	l, err := BootstrapLayer(boot, extra, types.OCILayer, work)
	if err != nil {
		t.Fatal(err)
	}
	compressed := readAll(t, l.Compressed)
	tarBytes := readAll(t, l.Uncompressed)
	d, _ := l.Digest()
	diffID, _ := l.DiffID()
	size, _ := l.Size()
	mt, _ := l.MediaType()
	if d != hashOf(compressed) || diffID != hashOf(tarBytes) || size != int64(len(compressed)) || mt != types.OCILayer {
		t.Errorf("layer %s %s %d %s; compressed hashes to %s (%d bytes), tar to %s", d, diffID, size, mt, hashOf(compressed), len(compressed), hashOf(tarBytes))
	}
	// Go's default gzip level, as nydus-snapshotter writes it: no name, no time, OS unknown.
	if !bytes.HasPrefix(compressed, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) {
		t.Errorf("gzip header % x", compressed[:10])
	}

	entries := readTar(t, tarBytes)
	want := []struct {
		name string
		mode int64
		typ  byte
		path string
	}{
		{"image", 0o755, tar.TypeDir, ""}, // nydus-snapshotter packToTar: filepath.Dir("image/image.boot")
		{"image/image.boot", 0o444, tar.TypeReg, boot},
		{"image/" + extra[0].Name, 0o444, tar.TypeReg, meta1},
		{"image/prefetch.files", 0o444, tar.TypeReg, meta2},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d tar entries, want %d", len(entries), len(want))
	}
	for i, w := range want {
		h := entries[i].hdr
		if h.Name != w.name || h.Mode != w.mode || h.Typeflag != w.typ {
			t.Errorf("entry %d: %s %o %c, want %s %o %c", i, h.Name, h.Mode, h.Typeflag, w.name, w.mode, w.typ)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("entry %d: owner %d:%d %q:%q mtime %v, want none", i, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		if w.path != "" {
			if content, _ := os.ReadFile(w.path); !bytes.Equal(entries[i].body, content) {
				t.Errorf("entry %d: content differs from %s", i, w.path)
			}
		}
	}

	// The gzip went to one file in workDir.
	files, _ := os.ReadDir(work)
	if len(files) != 1 {
		t.Errorf("workDir holds %d files, want the spilled gzip", len(files))
	}

	// The same inputs give the same bytes.
	again, err := BootstrapLayer(boot, extra, types.OCILayer, work)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, again.Compressed), compressed) {
		t.Error("a second build differs")
	}
}

// Building the bootstrap layer streams the bootstrap: the heap does not grow with it.
func TestBootstrapLayerStreams(t *testing.T) {
	dir := t.TempDir()
	boot := writeRandom(t, dir, "big.boot", 8<<20, 6)
	alloc := allocatedDuring(func() {
		if _, err := BootstrapLayer(boot, nil, types.DockerLayer, dir); err != nil {
			t.Fatal(err)
		}
	})
	if alloc > 2<<20 {
		t.Errorf("building from an 8 MiB bootstrap allocated %d bytes", alloc)
	}
}

func TestBootstrapLayerErrors(t *testing.T) {
	dir := t.TempDir()
	boot := writeRandom(t, dir, "b", 10, 7)
	work := t.TempDir()
	for _, tc := range []struct {
		name      string
		boot      string
		extra     []NamedFile
		mediaType types.MediaType
		wantErr   string
	}{
		{"empty name", boot, []NamedFile{{Name: "", Path: boot}}, types.OCILayer, `"" is not a file name`},
		{"path in name", boot, []NamedFile{{Name: "a/b", Path: boot}}, types.OCILayer, `"a/b" is not a file name`},
		{"dot dot", boot, []NamedFile{{Name: "..", Path: boot}}, types.OCILayer, `".." is not a file name`},
		{"bootstrap name", boot, []NamedFile{{Name: "image.boot", Path: boot}}, types.OCILayer, `"image.boot" appears twice`},
		{"duplicate", boot, []NamedFile{{Name: "x", Path: boot}, {Name: "x", Path: boot}}, types.OCILayer, `"x" appears twice`},
		{"missing bootstrap", filepath.Join(dir, "none"), nil, types.OCILayer, "no such file"},
		{"missing extra", boot, []NamedFile{{Name: "x", Path: filepath.Join(dir, "none")}}, types.OCILayer, "no such file"},
		{"directory", dir, nil, types.OCILayer, "is not a regular file"},
		{"not gzip", boot, nil, types.OCIUncompressedLayer, "is not a gzip layer type"},
		{"nydus blob type", boot, nil, MediaTypeNydusBlob, "is not a gzip layer type"},
	} {
		_, err := BootstrapLayer(tc.boot, tc.extra, tc.mediaType, work)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "building bootstrap layer: ") {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
	// Failed builds leave nothing behind.
	if files, _ := os.ReadDir(work); len(files) != 0 {
		t.Errorf("failed builds left %d files in workDir", len(files))
	}
	if _, err := BootstrapLayer(boot, nil, types.OCILayer, filepath.Join(dir, "no", "dir")); err == nil {
		t.Error("a missing workDir was accepted")
	}
}

func hashOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func TestBootstrapMediaType(t *testing.T) {
	for manifest, want := range map[types.MediaType]types.MediaType{
		types.OCIManifestSchema1:    types.OCILayer,
		types.DockerManifestSchema2: types.DockerLayer,
	} {
		if got := BootstrapMediaType(manifest); got != want {
			t.Errorf("BootstrapMediaType(%s) = %s, want %s", manifest, got, want)
		}
		l, err := BootstrapLayer(writeRandom(t, t.TempDir(), "boot", 10, 8), nil, want, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if mt, _ := l.MediaType(); mt != want {
			t.Errorf("bootstrap layer built as %s reports %s", want, mt)
		}
	}
}
