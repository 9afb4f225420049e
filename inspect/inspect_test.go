package inspect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

const (
	fixtureBoot = "../testdata/nydus/bootstrap/rafs-v6-2.2.boot"
	fixtureBlob = "../testdata/nydus/blobs/be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
)

func openFixture(t *testing.T, boot, blob []byte) *rafs.Image {
	t.Helper()
	img, err := rafs.OpenImage(bytes.NewReader(boot), int64(len(boot)), rafs.BlobOpenerFunc(
		func(int, rafs.BlobEntry) (io.ReaderAt, int64, error) {
			return bytes.NewReader(blob), int64(len(blob)), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestDescribeFixture(t *testing.T) {
	boot, err := os.ReadFile(fixtureBoot)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(fixtureBlob)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Describe(context.Background(), openFixture(t, boot, raw), Options{Blobs: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Entries) != 3 || rep.Entries[1].Path != "/lib.rs" || len(rep.Entries[2].Chunks) != 1 ||
		rep.Entries[2].Chunks[0] != (Chunk{Blob: 0, CIIndex: 1, BlkAddr: 5}) {
		t.Errorf("entries %+v", rep.Entries)
	}
	if b := rep.Blobs[0]; b.VerifiedChunks == nil || *b.VerifiedChunks != 2 || strings.Join(b.Features, " ") != "ALIGNED INLINED_CHUNK_DIGEST HAS_TAR_HEADER HAS_TOC CAP_TAR_TOC" {
		t.Errorf("blob %+v", b)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"HASH_BLAKE3", "verified: 2 chunks", "/sync_io.rs", "chunk 0: blob 0 ci 1 blkaddr 5"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	// Without verifying, nothing is read from the blobs.
	if rep, err := Describe(context.Background(), openFixture(t, boot, nil), Options{}); err != nil || rep.Blobs[0].VerifiedChunks != nil {
		t.Errorf("Describe without verifying: %v, %+v", err, rep)
	}

	// A flipped byte in a chunk makes Describe fail when it verifies.
	raw[10] ^= 0xff
	if _, err := Describe(context.Background(), openFixture(t, boot, raw), Options{Blobs: true}); err == nil {
		t.Error("a corrupted chunk verified")
	}
}

// TestVerifyCorruptChunkIndex builds an image of two one-chunk files, then
// points the chunk index of /b at the chunk of /a: first the chunk-info
// index alone, then with the block address to match. Every chunk of the
// blob is intact and matches its digest, so only checking the files' chunk
// indexes against the bootstrap's chunk table catches it; inspect must
// fail and name /b.
func TestVerifyCorruptChunkIndex(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	contents := map[string][]byte{
		"a": bytes.Repeat([]byte("first file "), 500),   // 5500 bytes
		"b": bytes.Repeat([]byte("second file. "), 700), // 9100 bytes
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, c := range contents {
		if err := os.WriteFile(filepath.Join(src, name), c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := rafsbuild.BuildDir(context.Background(), src, out, "img", rafsbuild.Options{Compressor: rafs.CompressZstd})
	if err != nil {
		t.Fatal(err)
	}
	bootPath := filepath.Join(out, res.Bootstrap)
	boot, err := os.ReadFile(bootPath)
	if err != nil {
		t.Fatal(err)
	}

	// The intact image verifies, and reads back what was written.
	img, err := extract.Open(bootPath, out)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	rep, err := Describe(context.Background(), img.RAFS, Options{Blobs: true})
	if err != nil || *rep.Blobs[0].VerifiedChunks != 2 {
		t.Fatalf("intact image: %v", err)
	}
	addr := map[string]rafs.ChunkAddr{}
	for name, c := range contents {
		n, err := img.Boot.Lookup("/" + name)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if err := img.RAFS.CopyFile(h, n); err != nil || !bytes.Equal(h.Sum(nil), sha256sum(c)) {
			t.Fatalf("/%s does not read back: %v", name, err)
		}
		addrs, err := img.Boot.Chunks(n)
		if err != nil || len(addrs) != 1 {
			t.Fatalf("/%s chunks %v, %v", name, addrs, err)
		}
		addr[name] = addrs[0]
	}
	if addr["a"].CIIndex == addr["b"].CIIndex {
		t.Fatal("test setup: /a and /b share a chunk")
	}

	for _, tc := range []struct {
		name string
		to   rafs.ChunkAddr
	}{
		{"chunk index", rafs.ChunkAddr{BlobIndex: 0, CIIndex: addr["a"].CIIndex, BlkAddr: addr["b"].BlkAddr}},
		{"chunk index and block address", addr["a"]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var from, to [rafs.ChunkAddrSize]byte
			b := addr["b"]
			b.MarshalTo(from[:])
			tc.to.MarshalTo(to[:])
			if n := bytes.Count(boot, from[:]); n != 1 {
				t.Fatalf("test setup: the chunk index of /b occurs %d times in the bootstrap", n)
			}
			bad := bytes.Replace(boot, from[:], to[:], 1)
			badPath := filepath.Join(t.TempDir(), "bad.meta")
			if err := os.WriteFile(badPath, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			img, err := extract.Open(badPath, out)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			_, err = Describe(context.Background(), img.RAFS, Options{Blobs: true})
			if err == nil || !strings.Contains(err.Error(), "/b (inode ") || !errors.Is(err, rafs.ErrCorrupt) {
				t.Errorf("inspect of a bootstrap whose /b points at the chunk of /a: %v; want a corruption naming /b", err)
			}
		})
	}
}

func sha256sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
