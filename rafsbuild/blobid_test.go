package rafsbuild_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// tocEntry is a TOC record as the format defines it (docs/rafs-format.md
// §2.8), decoded here by hand, not with the rafs package: 4-byte flags, 4
// reserved, a 16-byte NUL-padded name, a 32-byte digest, then compressed
// offset, compressed size and uncompressed size as little-endian u64.
type tocEntry struct {
	name       string
	digest     [32]byte
	off, csize uint64
	uncompSize uint64
}

// readTOC finds the TOC at the end of a blob: the last 512 bytes are a tar
// header named "rafs.blob.toc" whose octal size field (at 124) is the TOC's
// length, and the TOC's 128-byte entries sit just before that header.
func readTOC(t *testing.T, blob []byte) []tocEntry {
	t.Helper()
	hdr := blob[len(blob)-512:]
	if name := string(bytes.TrimRight(hdr[:100], "\x00")); name != "rafs.blob.toc" {
		t.Fatalf("last tar header is %q, want rafs.blob.toc", name)
	}
	size, err := strconv.ParseUint(strings.Trim(string(hdr[124:136]), "\x00 "), 8, 64)
	if err != nil || size%128 != 0 || size == 0 {
		t.Fatalf("TOC size field %q: %v", hdr[124:136], err)
	}
	toc := blob[len(blob)-512-int(size) : len(blob)-512]
	var out []tocEntry
	for e := toc; len(e) >= 128; e = e[128:] {
		var te tocEntry
		te.name = string(bytes.TrimRight(e[8:24], "\x00"))
		copy(te.digest[:], e[24:56])
		te.off = binary.LittleEndian.Uint64(e[56:64])
		te.csize = binary.LittleEndian.Uint64(e[64:72])
		te.uncompSize = binary.LittleEndian.Uint64(e[72:80])
		out = append(out, te)
	}
	return out
}

// TestBlobIDRule recomputes, from the format's definition (§2.9), the id of
// blobs our writer made: the SHA-256 of every byte of the blob except the
// blob.digest payload (its tar header included). The digest array's own TOC
// digest must also match the bytes it covers.
func TestBlobIDRule(t *testing.T) {
	src := sourceTree(t)
	for _, c := range compressors {
		t.Run(c.String(), func(t *testing.T) {
			out, res := build(t, src, rafsbuild.Options{Compressor: c, Digester: rafs.DigestSha256})
			if len(res.BlobInfo) != 1 {
				t.Fatalf("%d blobs", len(res.BlobInfo))
			}
			id := res.BlobInfo[0].BlobID
			blob, err := os.ReadFile(filepath.Join(out, id))
			if err != nil {
				t.Fatal(err)
			}
			var digestArray *tocEntry
			for _, e := range readTOC(t, blob) {
				if e.name == "blob.digest" {
					digestArray = &e
				}
			}
			if digestArray == nil || digestArray.csize == 0 {
				t.Fatalf("no blob.digest entry in the TOC")
			}
			payload := blob[digestArray.off : digestArray.off+digestArray.csize]
			if sha256.Sum256(payload) != digestArray.digest {
				t.Errorf("blob.digest TOC digest does not match its payload")
			}
			h := sha256.New()
			h.Write(blob[:digestArray.off])
			h.Write(blob[digestArray.off+digestArray.csize:])
			if want := hex.EncodeToString(h.Sum(nil)); id != want {
				t.Errorf("blob id %s, but the rule gives %s", id, want)
			}
			if whole := sha256.Sum256(blob); hex.EncodeToString(whole[:]) == id {
				t.Errorf("blob id is the digest of the whole file, which the rule excludes")
			}
		})
	}
}
