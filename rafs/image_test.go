package rafs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// built is a one-file image built by rafsbuild: the file's content, the
// bootstrap and the blob.
type built struct {
	content []byte
	boot    []byte
	blob    []byte
}

// buildOne builds a tree holding /a (10000 random bytes, one chunk) with
// uncompressed chunks and sha256 digests, so the test can find the chunk
// and its digest in the blob by content alone.
func buildOne(t *testing.T) built {
	t.Helper()
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	content := make([]byte, 10000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "a"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img",
		rafsbuild.Options{Compressor: rafs.CompressNone, Digester: rafs.DigestSha256})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(filepath.Join(out, res.Bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 1 {
		t.Fatalf("build wrote %d blobs, want 1", len(res.Blobs))
	}
	blob, err := os.ReadFile(filepath.Join(out, res.Blobs[0]))
	if err != nil {
		t.Fatal(err)
	}
	return built{content: content, boot: boot, blob: blob}
}

func openImage(t *testing.T, boot, blob []byte, opts ...rafs.ImageOption) *rafs.Image {
	t.Helper()
	img, err := rafs.OpenImage(bytes.NewReader(boot), int64(len(boot)), rafs.BlobOpenerFunc(
		func(int, rafs.BlobEntry) (io.ReaderAt, int64, error) {
			return bytes.NewReader(blob), int64(len(blob)), nil
		}), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func readFile(img *rafs.Image, p string) ([]byte, error) {
	n, err := img.Bootstrap().Lookup(p)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = img.CopyFile(&buf, n)
	return buf.Bytes(), err
}

// indexOnce returns where needle occurs in b, failing unless exactly once.
func indexOnce(t *testing.T, b, needle []byte, what string) int {
	t.Helper()
	if n := bytes.Count(b, needle); n != 1 {
		t.Fatalf("%s occurs %d times in the blob, want once", what, n)
	}
	return bytes.Index(b, needle)
}

// TestBlobCannotVouchForItself damages the chunk of /a and rewrites the
// blob's own digest array (and the TOC entry covering it) to match the
// damaged bytes. The blob is then self-consistent, but the bootstrap's chunk
// table still holds the digest of the original content, and the image
// refuses the chunk.
func TestBlobCannotVouchForItself(t *testing.T) {
	b := buildOne(t)
	want := sha256.Sum256(b.content) // computed here, not by the builder

	got, err := readFile(openImage(t, b.boot, b.blob), "/a")
	if err != nil || sha256.Sum256(got) != want {
		t.Fatalf("reading the intact image: %v (content matches: %v)", err, sha256.Sum256(got) == want)
	}

	blob := bytes.Clone(b.blob)
	at := indexOnce(t, blob, b.content, "the content of /a")
	blob[at+100] ^= 0xff
	bad := sha256.Sum256(blob[at : at+len(b.content)])
	// The digest array holds sha256(content) for the one chunk; the TOC
	// entry of the array holds sha256(array) = sha256(sha256(content)).
	arrayAt := indexOnce(t, blob, want[:], "the chunk digest")
	oldArraySum := sha256.Sum256(want[:])
	tocAt := indexOnce(t, blob, oldArraySum[:], "the digest array's TOC digest")
	copy(blob[arrayAt:], bad[:])
	newArraySum := sha256.Sum256(bad[:])
	copy(blob[tocAt:], newArraySum[:])

	// The blob now vouches for the damaged data.
	toc, _, err := rafs.ReadTOC(bytes.NewReader(blob), int64(len(blob)), 0)
	if err != nil {
		t.Fatal(err)
	}
	vouched := false
	for _, e := range toc {
		if e.Name == rafs.TOCBlobDigest {
			arr, err := rafs.ReadTOCData(bytes.NewReader(blob), e, 1<<20)
			vouched = err == nil && bytes.Equal(arr, bad[:])
		}
	}
	if !vouched {
		t.Fatal("test setup: the rewritten digest array does not vouch for the damaged chunk")
	}

	img := openImage(t, b.boot, blob)
	if img.Bootstrap().Blobs[0].Features&rafs.BlobInlinedChunkDigest == 0 {
		t.Fatal("test setup: the blob table does not announce the blob's digest array")
	}
	if _, err := readFile(img, "/a"); !errors.Is(err, rafs.ErrDigestMismatch) {
		t.Errorf("reading /a from the self-vouching blob: %v, want a digest mismatch", err)
	}
	if _, err := img.Verify(context.Background()); !errors.Is(err, rafs.ErrDigestMismatch) {
		t.Errorf("Verify of the self-vouching blob: %v, want a digest mismatch", err)
	}
	br, err := img.Blob(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := rafs.WriteBlobView(&memView{}, br); !errors.Is(err, rafs.ErrDigestMismatch) {
		t.Errorf("WriteBlobView of the self-vouching blob: %v, want a digest mismatch", err)
	}
}

// TestChunkInfoSourceMustAgree plugs in a chunk-info source that moves a
// chunk: the image refuses the blob, because the bootstrap's chunk table
// says otherwise.
func TestChunkInfoSourceMustAgree(t *testing.T) {
	b := buildOne(t)
	lying := func(r io.ReaderAt, size int64, e rafs.BlobEntry) (rafs.ChunkInfoSource, error) {
		src, err := rafs.LoadChunkInfo(r, size, e)
		return shifted{src}, err
	}
	img := openImage(t, b.boot, b.blob, rafs.WithChunkInfoLoader(lying))
	if _, err := img.Blob(0); !errors.Is(err, rafs.ErrCorrupt) {
		t.Errorf("a source disagreeing with the chunk table: %v, want ErrCorrupt", err)
	}
	if _, err := readFile(img, "/a"); err == nil {
		t.Error("/a read through a source disagreeing with the chunk table")
	}
	// The honest default source, plugged in explicitly, reads.
	img = openImage(t, b.boot, b.blob, rafs.WithChunkInfoLoader(rafs.LoadChunkInfo))
	if got, err := readFile(img, "/a"); err != nil || !bytes.Equal(got, b.content) {
		t.Errorf("reading /a: %v", err)
	}
}

// shifted reports every chunk one byte further into the blob.
type shifted struct{ rafs.ChunkInfoSource }

func (s shifted) Chunk(i uint32) rafs.ChunkLocation {
	c := s.ChunkInfoSource.Chunk(i)
	c.CompressedOffset++
	return c
}

// memView is an in-memory rafs.ViewFile.
type memView struct{ b []byte }

func (m *memView) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memView) Truncate(size int64) error {
	m.b = append(m.b[:0:0], make([]byte, size)...)
	return nil
}
