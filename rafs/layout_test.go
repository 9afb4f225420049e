package rafs

import (
	"bytes"
	"os"
	"testing"
)

// Vectors from upstream's unit tests (rafs/src/metadata/layout/v6.rs,
// storage/src/meta/chunk_info_v1.rs), docs/rafs-format.md §6.
func TestUpstreamVectors(t *testing.T) {
	var b [ChunkAddrSize]byte
	a := ChunkAddr{BlobIndex: 3, CIIndex: 0x123456, BlkAddr: 0xa5a53412}
	a.MarshalTo(b[:])
	if want := []byte{0x56, 0x34, 0x04, 0x12, 0x12, 0x34, 0xa5, 0xa5}; !bytes.Equal(b[:], want) {
		t.Errorf("chunk index % x, want % x", b, want)
	}
	if got, err := UnmarshalChunkAddr(b[:]); err != nil || got != a {
		t.Errorf("chunk index decodes to %+v (%v)", got, err)
	}
	xs := []Xattr{{"user.a", []byte{1}}, {"trusted.b", []byte{2}}}
	size, err := XattrAreaSize(xs)
	if err != nil || size != 28 || XattrICount(size) != 5 {
		t.Errorf("xattr area %d icount %d (%v), want 28 and 5", size, XattrICount(size), err)
	}
	back, err := UnmarshalXattrs(MarshalXattrs(nil, xs))
	if err != nil || len(back) != 2 || back[0].Name != "user.a" || back[1].Name != "trusted.b" || back[1].Value[0] != 2 {
		t.Errorf("xattrs round trip to %+v (%v)", back, err)
	}
	if _, err := XattrAreaSize([]Xattr{{"system.nfs4_acl", nil}}); err == nil {
		t.Error("system.nfs4_acl accepted; EROFS has no prefix for it")
	}
}

func TestChunkInfoV1Limits(t *testing.T) {
	for _, c := range []BlobChunk{
		{0, 1, 0, 1},
		{1<<40 - 1, 1 << 24, 1<<44 - 1<<12, 1 << 24},
		{0x12345678, 0xabcde, 0xfff_0000_0000, 0x100000},
	} {
		got := UnmarshalChunkInfoV1(AppendChunkInfoV1(nil, c))
		if got != c {
			t.Errorf("chunk info v1 %+v round-trips to %+v", c, got)
		}
	}
}

func TestRdev(t *testing.T) {
	for _, d := range [][2]uint32{{1, 3}, {259, 70000}, {7, 200}, {0xfff, 0xfffff}} {
		if major, minor := DecodeRdev(EncodeRdev(d[0], d[1])); major != d[0] || minor != d[1] {
			t.Errorf("rdev %d:%d round-trips to %d:%d", d[0], d[1], major, minor)
		}
	}
	// Linux new_encode_dev(MKDEV(259, 70000)).
	if got := EncodeRdev(259, 70000); got != 70000&0xff|259<<8|(70000&^0xff)<<12 {
		t.Errorf("EncodeRdev(259, 70000) = %#x", got)
	}
}

func TestTarHeader(t *testing.T) {
	h := TarHeader(TOCBlobDigest, 64)
	name, size, err := ParseTarHeader(h)
	if err != nil || name != TOCBlobDigest || size != 64 {
		t.Fatalf("tar header parses to %q %d (%v)", name, size, err)
	}
	// The fixture blob's blob.digest header, written by upstream, is byte-identical.
	raw, err := os.ReadFile(fixtureBlobPath)
	if err != nil {
		t.Fatal(err)
	}
	toc, _, err := ReadTOC(bytes.NewReader(raw), int64(len(raw)), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range toc {
		if e.Name == TOCBlobDigest {
			end := e.CompressedOffset + e.CompressedSize
			if !bytes.Equal(raw[end:end+TarHeaderSize], TarHeader(TOCBlobDigest, e.CompressedSize)) {
				t.Error("our blob.digest tar header differs from upstream's")
			}
		}
	}
}
