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

// randomBytes returns size pseudo-random bytes (seeded, never starting like gzip or zstd).
func randomBytes(size int, seed uint64) []byte {
	b := make([]byte, size)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rand.NewChaCha8(key).Read(b)
	if size > 0 {
		b[0] = 'N' // not a compression magic, so ggcr's peeking Uncompressed passes it through
	}
	return b
}

// writeRandom writes randomBytes(size, seed) to a new file in dir and returns its path.
func writeRandom(t *testing.T, dir, name string, size int, seed uint64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, randomBytes(size, seed), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// blobOf describes the blob file at p as the build would: its digest and size.
func blobOf(t *testing.T, p string) Blob {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return Blob{Path: p, Digest: sha256File(t, p), Size: fi.Size()}
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

	l, err := blobLayer(Blob{Path: path, Digest: want, Size: int64(len(content))})
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

	// A file that does not match the digest the build reported fails the read instead of
	// passing wrong bytes on.
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

	missing, err := blobLayer(Blob{Path: filepath.Join(dir, "missing"), Digest: want, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.Compressed(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("opening a missing blob = %v", err)
	}
	for _, b := range []Blob{
		{Path: path, Digest: v1.Hash{Algorithm: "sha512", Hex: want.Hex}, Size: 1},
		{Path: path, Digest: v1.Hash{Algorithm: "sha256", Hex: want.Hex[:63]}, Size: 1},
		{Path: path, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.ToUpper(want.Hex)}, Size: 1},
		{Path: path, Digest: want, Size: -1},
	} {
		if _, err := blobLayer(b); err == nil {
			t.Errorf("blobLayer(%+v) accepted", b)
		}
	}
}

// Making a blob layer reads nothing, and reading it streams: the heap does not grow with
// the file.
func TestBlobLayerStreams(t *testing.T) {
	path := writeRandom(t, t.TempDir(), "blob", 32<<20, 2)
	b := blobOf(t, path)
	var l v1.Layer
	alloc := allocatedDuring(func() {
		var err error
		if l, err = blobLayer(b); err != nil {
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
		t.Errorf("reading a 32 MiB blob twice allocated %d bytes", alloc)
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
	boot := randomBytes(100<<10, 3)
	extra := []namedFile{{name: strings.Repeat("a", 64) + ".blob.meta", data: randomBytes(4096+80, 4)}, {name: "prefetch.files", data: []byte{}}}
	work := t.TempDir()

	l, err := bootstrapLayer(boot, extra, types.OCILayer, work)
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
		body []byte
	}{
		{"image", 0o755, tar.TypeDir, nil}, // nydus-snapshotter packToTar: filepath.Dir("image/image.boot")
		{"image/image.boot", 0o444, tar.TypeReg, boot},
		{"image/" + extra[0].name, 0o444, tar.TypeReg, extra[0].data},
		{"image/prefetch.files", 0o444, tar.TypeReg, extra[1].data},
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
		if !bytes.Equal(entries[i].body, w.body) {
			t.Errorf("entry %d: content differs", i)
		}
	}

	// The gzip went to one file in workDir.
	files, _ := os.ReadDir(work)
	if len(files) != 1 {
		t.Errorf("workDir holds %d files, want the spilled gzip", len(files))
	}

	// The same inputs give the same bytes.
	again, err := bootstrapLayer(boot, extra, types.OCILayer, work)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, again.Compressed), compressed) {
		t.Error("a second build differs")
	}
}

// Building the bootstrap layer streams the gzip to its file: the heap does not grow with it.
func TestBootstrapLayerStreams(t *testing.T) {
	dir := t.TempDir()
	boot := randomBytes(8<<20, 6)
	alloc := allocatedDuring(func() {
		if _, err := bootstrapLayer(boot, nil, types.DockerLayer, dir); err != nil {
			t.Fatal(err)
		}
	})
	if alloc > 2<<20 {
		t.Errorf("building from an 8 MiB bootstrap allocated %d bytes", alloc)
	}
}

func TestBootstrapLayerErrors(t *testing.T) {
	boot := randomBytes(10, 7)
	work := t.TempDir()
	for _, tc := range []struct {
		name      string
		extra     []namedFile
		mediaType types.MediaType
		wantErr   string
	}{
		{"empty name", []namedFile{{name: "", data: boot}}, types.OCILayer, `"" is not a file name`},
		{"path in name", []namedFile{{name: "a/b", data: boot}}, types.OCILayer, `"a/b" is not a file name`},
		{"dot dot", []namedFile{{name: "..", data: boot}}, types.OCILayer, `".." is not a file name`},
		{"bootstrap name", []namedFile{{name: "image.boot", data: boot}}, types.OCILayer, `"image.boot" appears twice`},
		{"duplicate", []namedFile{{name: "x", data: boot}, {name: "x", data: boot}}, types.OCILayer, `"x" appears twice`},
		{"not gzip", nil, types.OCIUncompressedLayer, "is not a gzip layer type"},
		{"nydus blob type", nil, MediaTypeNydusBlob, "is not a gzip layer type"},
	} {
		_, err := bootstrapLayer(boot, tc.extra, tc.mediaType, work)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "building bootstrap layer: ") {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
	// Failed builds leave nothing behind.
	if files, _ := os.ReadDir(work); len(files) != 0 {
		t.Errorf("failed builds left %d files in workDir", len(files))
	}
	if _, err := bootstrapLayer(boot, nil, types.OCILayer, filepath.Join(work, "no", "dir")); err == nil {
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
		l, err := bootstrapLayer(randomBytes(10, 8), nil, want, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if mt, _ := l.MediaType(); mt != want {
			t.Errorf("bootstrap layer built as %s reports %s", want, mt)
		}
	}
}
