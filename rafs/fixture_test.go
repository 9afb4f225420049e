package rafs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

const (
	fixtureDir      = "../testdata/nydus"
	fixtureBoot     = fixtureDir + "/bootstrap/rafs-v6-2.2.boot"
	fixtureBlobID   = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
	fixtureTOCBlob  = "2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca"
	fixtureBlobPath = fixtureDir + "/blobs/" + fixtureBlobID
)

func openFile(t testing.TB, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}

// TestFixtureBootstrap decodes upstream's v6 bootstrap and compares it with
// the values docs/rafs-format.md §1.1 reads off it.
func TestFixtureBootstrap(t *testing.T) {
	f, size := openFile(t, fixtureBoot)
	rd, err := Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	sb, ext := rd.Super, rd.Ext
	if sb.RootNid != 128 || sb.Inos != 3 || sb.Blocks != 9 || sb.MetaBlkAddr != 2 || sb.ExtraDevices != 1 {
		t.Errorf("superblock %+v", sb)
	}
	if ext.Flags != 0x194 || ext.BlobTableOffset != 0x1000 || ext.BlobTableSize != 0x100 ||
		ext.ChunkSize != 0x100000 || ext.ChunkTableOffset != 0x4000 || ext.ChunkTableSize != 0xa0 {
		t.Errorf("ext superblock %+v", ext)
	}
	if d := rd.Devices[0]; d.Tag != fixtureBlobID || d.Blocks != 9 || d.MappedBlkAddr != 512 {
		t.Errorf("device slot %+v", d)
	}
	b := rd.Blobs[0]
	if b.BlobID != fixtureBlobID || b.Features != 0x70000021 || b.Compressor != CompressZstd ||
		b.Digester != DigestBlake3 || b.ChunkCount != 2 || b.CompressedSize != 0x38da ||
		b.UncompressedSize != 0x9000 || b.MetaOffset != 0x207a || b.MetaSize != 0x20 || b.TOCSize != 0x400 {
		t.Errorf("blob entry %+v", b)
	}
	sizes := map[string]uint64{}
	err = rd.Walk(func(p string, n *Node) error {
		sizes[p] = n.Inode.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 || sizes["/lib.rs"] != 16931 || sizes["/sync_io.rs"] != 13400 {
		t.Errorf("tree %v", sizes)
	}
	n, err := rd.Lookup("/sync_io.rs")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := rd.Chunks(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0] != (ChunkAddr{BlobIndex: 0, CIIndex: 1, BlkAddr: 5}) {
		t.Errorf("chunk addrs of /sync_io.rs %+v", addrs)
	}
	table, err := rd.ChunkTable()
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != 2 || bytes.Compare(table[0].Digest[:], table[1].Digest[:]) >= 0 {
		t.Errorf("chunk table not two records sorted by digest: %+v", table)
	}
}

// TestFixtureBlob reads every file of the fixture through its blob: chunk
// info v1, zstd chunks and blake3 digests from the bootstrap's chunk table.
func TestFixtureBlob(t *testing.T) {
	bf, bsize := openFile(t, fixtureBoot)
	rd, err := Open(bf, bsize)
	if err != nil {
		t.Fatal(err)
	}
	f, size := openFile(t, fixtureBlobPath)
	toc, tocDigest, err := ReadTOC(f, size, rd.Blobs[0].TOCSize)
	if err != nil {
		t.Fatal(err)
	}
	if tocDigest != rd.Blobs[0].TOCDigest {
		t.Errorf("TOC digest %x, blob table says %x", tocDigest, rd.Blobs[0].TOCDigest)
	}
	var names []string
	for _, e := range toc {
		names = append(names, e.Name)
	}
	if want := []string{TOCImageBlob, TOCBlobMeta, TOCBlobMetaHeader, TOCBlobDigest}; !equalStrings(names, want) {
		t.Errorf("TOC names %v, want %v", names, want)
	}
	if c := UnmarshalChunkInfoV1([]byte{0, 0, 0, 0, 0, 0x20, 0x22, 0x04, 0, 0, 0, 0, 0, 0xb0, 0x2d, 0x01}); c != (BlobChunk{0, 0x12dc, 0, 0x4223}) {
		t.Errorf("chunk info v1 vector decodes to %+v", c)
	}
	img, err := NewImage(rd, BlobOpenerFunc(func(int, BlobEntry) (io.ReaderAt, int64, error) { return f, size, nil }))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := img.Blob(0)
	if err != nil {
		t.Fatal(err)
	}
	if got := blob.TableChunks(); len(got) != 2 {
		t.Fatalf("chunk table records chunks %v, want 2", got)
	}
	// Upstream wrote the chunk digests twice: into the bootstrap's chunk
	// table, which the reader verifies against, and into the blob's own
	// digest array, which it ignores. They agree.
	for _, e := range toc {
		if e.Name != TOCBlobDigest {
			continue
		}
		arr, err := ReadTOCData(f, e, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		table, _ := rd.ChunkTable()
		for _, c := range table {
			if !bytes.Equal(arr[c.Index*DigestSize:(c.Index+1)*DigestSize], c.Digest[:]) {
				t.Errorf("chunk %d: digest array and chunk table disagree", c.Index)
			}
		}
	}
	err = rd.Walk(func(p string, n *Node) error {
		if !n.IsReg() {
			return nil
		}
		var buf bytes.Buffer
		if err := img.CopyFile(&buf, n); err != nil {
			return err
		}
		if uint64(buf.Len()) != n.Inode.Size {
			t.Errorf("%s: read %d bytes, want %d", p, buf.Len(), n.Inode.Size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if counts, err := img.Verify(t.Context()); err != nil || len(counts) != 1 || counts[0] != 2 {
		t.Errorf("Verify = %v, %v; want 2 chunks", counts, err)
	}
	// Blob id quirk (§2.9): sha256 over the blob without the digest array.
	raw, err := os.ReadFile(fixtureBlobPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range toc {
		if e.Name == TOCBlobDigest {
			h := sha256.New()
			h.Write(raw[:e.CompressedOffset])
			h.Write(raw[e.CompressedOffset+e.CompressedSize:])
			if got := hex.EncodeToString(h.Sum(nil)); got != fixtureBlobID {
				t.Errorf("blob id %s, want %s", got, fixtureBlobID)
			}
		}
	}
}

// TestFixtureInlineBootstrap extracts the zstd image.boot from the inline-meta
// blob and walks it.
func TestFixtureInlineBootstrap(t *testing.T) {
	f, size := openFile(t, filepath.Join(fixtureDir, "toc", fixtureTOCBlob))
	toc, digest, err := ReadTOC(f, size, 0)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(digest[:4]) != "4fdfbb36" {
		t.Errorf("TOC digest %x", digest)
	}
	var boot []byte
	for _, e := range toc {
		if e.Name == TOCImageBoot {
			if boot, err = ReadTOCData(f, e, 1<<30); err != nil {
				t.Fatal(err)
			}
		}
	}
	rd, err := Open(bytes.NewReader(boot), int64(len(boot)))
	if err != nil {
		t.Fatal(err)
	}
	// The data lives in the same blob; its chunks are checked against the
	// inline bootstrap's chunk table (this old blob has no digest array).
	img, err := NewImage(rd, BlobOpenerFunc(func(int, BlobEntry) (io.ReaderAt, int64, error) { return f, size, nil }))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := img.Blob(0)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	if err := rd.Walk(func(p string, n *Node) error {
		if !n.IsReg() {
			return nil
		}
		files++
		var buf bytes.Buffer
		if err := img.CopyFile(&buf, n); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if uint64(buf.Len()) != n.Inode.Size {
			t.Errorf("%s: %d bytes, want %d", p, buf.Len(), n.Inode.Size)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if files != 3 || len(blob.TableChunks()) != int(rd.Blobs[0].ChunkCount) {
		t.Errorf("inline bootstrap has %d files and %d chunk digests", files, len(blob.TableChunks()))
	}
}

func TestFixtureZstd(t *testing.T) {
	f, _ := openFile(t, filepath.Join(fixtureDir, "zstd", fixtureTOCBlob+".zst"))
	raw, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decompressLarge(CompressZstd, raw, 10034)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(out); hex.EncodeToString(sum[:]) != fixtureTOCBlob {
		t.Errorf("zstd fixture decodes to sha256 %x", sum)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
