package zran

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
)

const upstreamMeta = "233c72f2b6b698c07021c4da367cfe2dff4f049efbaa885ca0ff760ea297865a.blob.meta"

// TestUpstreamContextTable parses upstream's zran blob.meta (the CCT padded
// to 4 KiB, then the 4096-byte header, as nydusd caches it), checks the
// figures upstream documents for it (docs/zran.md, "Tests and yardsticks"), and writes it back byte for byte.
func TestUpstreamContextTable(t *testing.T) {
	meta := fixture(t, upstreamMeta)
	h, err := rafs.UnmarshalBlobMetaHeader(meta[len(meta)-rafs.BlobMetaHeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if h.CIEntries != 163 || h.ContextCount != 21 || h.ContextOffset != 163*24 || h.CISize != h.ContextOffset+h.ContextSize {
		t.Fatalf("header %+v: want 163 chunks, 21 contexts, contexts at 163×24 ending the table", h)
	}
	cct := meta[:h.CISize]
	ctxs, dicts, err := ParseContextTable(cct[h.ContextOffset:], h.ContextCount)
	if err != nil {
		t.Fatal(err)
	}
	c0 := ctxs[0]
	if c0.InOffset != 10 || c0.InLen != 200380 || c0.OutOffset != 0 || c0.OutLen != 1052790 || c0.DictSize != 0 || c0.Bits != 0 {
		t.Errorf("context 0 = %+v, upstream: in 10, in_len 200380, out 0, out_len 1052790, no window, no bits", c0)
	}
	if ctxs[1].OutOffset != 987149 {
		t.Errorf("context 1 starts at output %d, upstream 987149", ctxs[1].OutOffset)
	}
	for i, c := range ctxs[1:] {
		if c.DictSize != WindowSize {
			t.Errorf("context %d: window of %d bytes, want %d", i+1, c.DictSize, WindowSize)
		}
	}
	ch0 := rafs.UnmarshalChunkInfoV2(cct)
	want := rafs.ChunkInfoV2{UncompressedOffset: 0, UncompressedSize: 1404, Flags: rafs.ChunkV2Compressed | rafs.ChunkV2Zran,
		CompressedOffset: 0xb8, CompressedSize: 649, ZranIndex: 0, ZranOffset: 1024}
	if ch0 != want {
		t.Errorf("chunk 0 = %+v, upstream %+v", ch0, want)
	}

	// Write it all back: chunk records, context records, windows, header.
	var out []byte
	for i := range h.CIEntries {
		out = rafs.AppendChunkInfoV2(out, rafs.UnmarshalChunkInfoV2(cct[i*24:]))
	}
	for _, c := range ctxs {
		out = AppendContext(out, c)
	}
	out = append(out, dicts...)
	if !bytes.Equal(out, cct) {
		t.Fatal("re-encoded table differs from upstream's")
	}
	if !bytes.Equal(h.Marshal(), meta[len(meta)-rafs.BlobMetaHeaderSize:]) {
		t.Fatal("re-encoded header differs from upstream's")
	}
}

// TestParseContextTableRejects: each broken field gives ErrContextTable.
func TestParseContextTableRejects(t *testing.T) {
	good := Context{InOffset: 10, InLen: 100, OutLen: 1000, DictSize: 4, Bits: 3}
	for name, c := range map[string]Context{
		"bits":        {Bits: 8},
		"window-size": {DictSize: WindowSize + 1},
		"window-out":  {DictOffset: 1, DictSize: 4},
		"in-overflow": {InOffset: 1<<64 - 10, InLen: 100},
		"out-limit":   {OutLen: MaxContextOut + 1},
	} {
		b := AppendContext(AppendContext(nil, good), c)
		b = append(b, 1, 2, 3, 4)
		if _, _, err := ParseContextTable(b, 2); !errors.Is(err, ErrContextTable) {
			t.Errorf("%s: error %v, want %v", name, err, ErrContextTable)
		}
	}
	if _, _, err := ParseContextTable(make([]byte, 79), 2); !errors.Is(err, ErrContextTable) {
		t.Errorf("short table: %v", err)
	}
}
