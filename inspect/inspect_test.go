package inspect

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
)

const (
	fixtureBoot = "../testdata/nydus/bootstrap/rafs-v6-2.2.boot"
	fixtureBlob = "../testdata/nydus/blobs/be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
)

func TestDescribeFixture(t *testing.T) {
	boot, err := os.ReadFile(fixtureBoot)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := rafs.Open(bytes.NewReader(boot), int64(len(boot)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(fixtureBlob)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := rafs.OpenBlob(bytes.NewReader(raw), int64(len(raw)), rd.Blobs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Describe(rd, []*rafs.BlobReader{blob})
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

	// A flipped byte in a chunk makes Describe fail when it verifies.
	raw[10] ^= 0xff
	blob, err = rafs.OpenBlob(bytes.NewReader(raw), int64(len(raw)), rd.Blobs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Describe(rd, []*rafs.BlobReader{blob}); err == nil {
		t.Error("a corrupted chunk verified")
	}
}
