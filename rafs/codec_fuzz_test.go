package rafs

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// The encoders below are written from the format's tables (rafs-format
// §2.3, §2.4, §2.8), not from our code, so the fuzz targets compare our
// encoder with the specification as well as with our decoder.

// specChunkInfoV1 lays out a v1 chunk-info record as §2.4's table says:
// u: bits 8-11 (usize-1) bits 20-23, bits 12-43 the uncompressed offset,
// bits 44-63 (usize-1) bits 0-19; c: bits 0-39 the compressed offset,
// bits 40-43 (csize-1) bits 20-23, bits 44-63 (csize-1) bits 0-19.
func specChunkInfoV1(c BlobChunk) []byte {
	us, cs := uint64(c.UncompressedSize)-1, uint64(c.CompressedSize)-1
	var u, v uint64
	u |= (us >> 20 & 0xf) << 8
	u |= c.UncompressedOffset & (1<<44 - 1) &^ (1<<12 - 1)
	u |= (us & (1<<20 - 1)) << 44
	v |= c.CompressedOffset & (1<<40 - 1)
	v |= (cs >> 20 & 0xf) << 40
	v |= (cs & (1<<20 - 1)) << 44
	b := binary.LittleEndian.AppendUint64(nil, u)
	return binary.LittleEndian.AppendUint64(b, v)
}

// representable folds arbitrary fields into what a v1 record can hold:
// sizes 1..16 MiB, the uncompressed offset 4 KiB-aligned below 2^44, the
// compressed offset below 2^40.
func representable(cOff, uOff uint64, cSize, uSize uint32) BlobChunk {
	return BlobChunk{
		CompressedOffset:   cOff & (1<<40 - 1),
		CompressedSize:     cSize%(1<<24) + 1,
		UncompressedOffset: uOff & (1<<44 - 1) &^ (1<<12 - 1),
		UncompressedSize:   uSize%(1<<24) + 1,
	}
}

// TestChunkInfoV1SpecExample decodes the record §2.4 verified on upstream's
// blob be7d77… and encodes it back to the same bytes.
func TestChunkInfoV1SpecExample(t *testing.T) {
	rec := []byte{0, 0, 0, 0, 0, 0x20, 0x22, 0x04, 0, 0, 0, 0, 0, 0xb0, 0x2d, 0x01}
	got := UnmarshalChunkInfoV1(rec)
	want := BlobChunk{CompressedOffset: 0, CompressedSize: 0x12dc, UncompressedOffset: 0, UncompressedSize: 0x4223}
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	if enc := AppendChunkInfoV1(nil, got); !bytes.Equal(enc, rec) {
		t.Fatalf("encoded % x, want % x", enc, rec)
	}
}

// FuzzChunkInfoV1: every representable chunk encodes to the bytes the
// specification lays out and decodes to itself; any 16 bytes whose
// reserved bits (u 0-7) are zero decode to a chunk that encodes back to
// the same bytes.
func FuzzChunkInfoV1(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint32(0x12db), uint32(0x4222))
	f.Add(uint64(1<<40-1), uint64(1<<44-4096), uint32(1<<24-1), uint32(1<<24-1))
	f.Add(uint64(0x12345), uint64(0x100000), uint32(0xfffff), uint32(0x100000))
	f.Fuzz(func(t *testing.T, cOff, uOff uint64, cSize, uSize uint32) {
		c := representable(cOff, uOff, cSize, uSize)
		enc := AppendChunkInfoV1(nil, c)
		if want := specChunkInfoV1(c); !bytes.Equal(enc, want) {
			t.Fatalf("%+v encoded % x, the specification says % x", c, enc, want)
		}
		if got := UnmarshalChunkInfoV1(enc); got != c {
			t.Fatalf("%+v decoded as %+v", c, got)
		}
		if got := c.Compressed(); got != (c.CompressedSize != c.UncompressedSize) {
			t.Fatalf("%+v compressed %v", c, got)
		}
		// The other direction, on raw bytes made from the fuzz input.
		raw := binary.LittleEndian.AppendUint64(nil, cOff&^0xff)
		raw = binary.LittleEndian.AppendUint64(raw, uOff)
		if back := AppendChunkInfoV1(nil, UnmarshalChunkInfoV1(raw)); !bytes.Equal(back, raw) {
			t.Fatalf("% x decoded and encoded to % x", raw, back)
		}
	})
}

// specBlobMetaHeader lays out §2.3's table.
func specBlobMetaHeader(h BlobMetaHeader) []byte {
	b := make([]byte, 4096)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 0xB10BB10B)
	le.PutUint32(b[4:], uint32(h.Features))
	le.PutUint32(b[8:], uint32(h.CICompressor))
	le.PutUint32(b[12:], h.CIEntries)
	le.PutUint64(b[16:], h.CIOffset)
	le.PutUint64(b[24:], h.CICompressedSize)
	le.PutUint64(b[32:], h.CISize)
	le.PutUint64(b[40:], h.ContextOffset)
	le.PutUint64(b[48:], h.ContextSize)
	le.PutUint32(b[56:], h.ContextCount)
	le.PutUint32(b[4092:], 0xB10BB10B)
	return b
}

// FuzzMetaHeaderCodec: every header marshals to §2.3's layout and
// unmarshals to itself; 64 fuzz bytes placed as the header's fields, with
// the magics, unmarshal to a header that marshals back to those bytes. A
// header whose either magic is wrong is refused.
func FuzzMetaHeaderCodec(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0xa5}, 60), uint8(0))
	f.Add(make([]byte, 60), uint8(3))
	f.Fuzz(func(t *testing.T, fields []byte, flip uint8) {
		fields = append(fields, make([]byte, 60)...)[:60]
		le := binary.LittleEndian
		h := BlobMetaHeader{
			Features: BlobFeatures(le.Uint32(fields[4:])), CICompressor: Compressor(le.Uint32(fields[8:])),
			CIEntries: le.Uint32(fields[12:]), CIOffset: le.Uint64(fields[16:]),
			CICompressedSize: le.Uint64(fields[24:]), CISize: le.Uint64(fields[32:]),
			ContextOffset: le.Uint64(fields[40:]), ContextSize: le.Uint64(fields[48:]),
			ContextCount: le.Uint32(fields[56:]),
		}
		enc := h.Marshal()
		want := specBlobMetaHeader(h)
		if !bytes.Equal(enc, want) {
			t.Fatalf("%+v marshalled differently from the specification", h)
		}
		got, err := UnmarshalBlobMetaHeader(enc)
		if err != nil || got != h {
			t.Fatalf("%+v unmarshalled as %+v, %v", h, got, err)
		}
		raw := append([]byte(nil), want...)
		copy(raw[4:60], fields[4:60])
		back, err := UnmarshalBlobMetaHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		if m := back.Marshal(); !bytes.Equal(m, raw) {
			t.Fatalf("header bytes did not survive unmarshal and marshal")
		}
		bad := append([]byte(nil), raw...)
		pos := []int{0, 1, 2, 3, 4092, 4093, 4094, 4095}[flip%8]
		bad[pos] ^= 1 << (flip / 8 % 8)
		if _, err := UnmarshalBlobMetaHeader(bad); err == nil {
			t.Fatalf("a header with byte %d of a magic changed was accepted", pos)
		}
		if _, err := UnmarshalBlobMetaHeader(raw[:4095]); err == nil {
			t.Fatal("a truncated header was accepted")
		}
	})
}

// FuzzTOCEntry: an entry whose name fits (at most 16 bytes, no NUL) encodes
// at §2.8's offsets and decodes to itself; any 128 bytes decode to an entry
// that encodes back to them with the reserved bytes cleared (the name is
// the 16 bytes less their NUL padding, so it writes back as it was). The tar header written after a section of that size and
// name is read by archive/tar as that name and size.
func FuzzTOCEntry(f *testing.F) {
	f.Add(uint32(1), "image.blob", bytes.Repeat([]byte{7}, 32), uint64(0), uint64(4096), uint64(8192), make([]byte, 128))
	f.Add(uint32(2), "blob.meta.header", []byte{1, 2, 3}, uint64(1<<40), uint64(1), uint64(0), bytes.Repeat([]byte{0xff}, 128))
	f.Fuzz(func(t *testing.T, flags uint32, name string, digest []byte, cOff, cSize, uSize uint64, raw []byte) {
		if len(name) > 16 || bytes.IndexByte([]byte(name), 0) >= 0 {
			name = ""
		}
		e := TOCEntry{Flags: flags, Name: name, CompressedOffset: cOff, CompressedSize: cSize, UncompressedSize: uSize}
		copy(e.Digest[:], digest)
		enc := AppendTOCEntry(nil, e)
		le := binary.LittleEndian
		want := make([]byte, 128)
		le.PutUint32(want[0:], flags)
		copy(want[8:24], name)
		copy(want[24:56], e.Digest[:])
		le.PutUint64(want[56:], cOff)
		le.PutUint64(want[64:], cSize)
		le.PutUint64(want[72:], uSize)
		if !bytes.Equal(enc, want) {
			t.Fatalf("%+v encoded % x, the specification says % x", e, enc, want)
		}
		if got := UnmarshalTOCEntry(enc); got != e {
			t.Fatalf("%+v decoded as %+v", e, got)
		}
		if c, err := e.Compressor(); err == nil {
			flag := map[Compressor]uint32{CompressNone: 0x1, CompressZstd: 0x2, CompressLZ4Block: 0x4}[c]
			if flags&0x7 != flag {
				t.Fatalf("flags %#x read as %v", flags, c)
			}
		} else if f := flags & 0x7; f == 0x1 || f == 0x2 || f == 0x4 {
			t.Fatalf("flags %#x refused: %v", flags, err)
		}

		raw = append(raw, make([]byte, 128)...)[:128]
		back := AppendTOCEntry(nil, UnmarshalTOCEntry(raw))
		clean := append([]byte(nil), raw...)
		clear(clean[4:8])
		clear(clean[80:128])
		if !bytes.Equal(back, clean) {
			t.Fatalf("% x decoded and encoded to % x", clean, back)
		}

		if name == "" {
			return
		}
		size := uSize % (1 << 33) // 11 octal digits
		hdr := TarHeader(name, size)
		gotName, gotSize, err := ParseTarHeader(hdr)
		if err != nil || gotName != name || gotSize != size {
			t.Fatalf("ParseTarHeader(TarHeader(%q, %d)) = %q, %d, %v", name, size, gotName, gotSize, err)
		}
		tr := tar.NewReader(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(make([]byte, 1024))))
		th, err := tr.Next()
		if err != nil {
			t.Fatalf("archive/tar refused the header for %q, %d: %v", name, size, err)
		}
		if th.Name != name || th.Size != int64(size) || th.Typeflag != tar.TypeReg {
			t.Fatalf("archive/tar read %q size %d type %c, want %q %d", th.Name, th.Size, th.Typeflag, name, size)
		}
	})
}
