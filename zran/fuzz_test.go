package zran

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecode: on any input the decoder agrees with Go's compress/gzip:
// where compress/gzip decodes, the output is the same; where it fails, so
// does the decoder (except reserved header flags, which compress/gzip
// lets through and RFC 1952 forbids). Resuming at each reported point
// reproduces the rest (at up to 16 points).
func FuzzDecode(f *testing.F) {
	for _, n := range fixtureNames {
		if n != "bgzip.tar.gz" {
			f.Add(fixture(f, n))
		}
	}
	rng := newRand(9)
	f.Add(gzipStd(f, 0, textData(rng, 3000)))
	f.Add(gzipStd(f, 9, textData(rng, 70000), make([]byte, 5000)))
	f.Add(gzipKlauspost(f, 1, randomData(rng, 2000)))
	f.Add(farMatch())
	f.Fuzz(func(t *testing.T, gz []byte) {
		var cps []Checkpoint
		got, err := io.ReadAll(NewReader(bytes.NewReader(gz), func(cp Checkpoint) {
			cp.Window = bytes.Clone(cp.Window)
			cps = append(cps, cp)
		}))
		want, stdErr := readAllStd(gz)
		reserved := errors.Is(err, ErrReservedFlags)
		switch {
		case stdErr == nil && err == nil:
			if !bytes.Equal(got, want) {
				t.Fatalf("output differs from compress/gzip: %d bytes, want %d", len(got), len(want))
			}
		case stdErr == nil && !reserved:
			t.Fatalf("compress/gzip decodes it, zran fails: %v", err)
		case stdErr != nil && err == nil:
			t.Fatalf("compress/gzip fails (%v), zran decodes %d bytes", stdErr, len(got))
		}
		if err != nil {
			return
		}
		for i := 0; i < len(cps); i += max(1, len(cps)/16) { // bounded work per input
			cp := cps[i]
			r, err := NewResumeReader(bytes.NewReader(gz[cp.In:]), cp, nil)
			if err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(rest, got[cp.Out:]) {
				t.Fatalf("resume at %s: %v, output equal %v", cpSummary(cp), err, bytes.Equal(rest, got[cp.Out:]))
			}
		}
	})
}

// FuzzParseContextTable: any bytes and count parse or fail cleanly, what
// parses lies inside the table and writes back to the same records, and
// the allocation is bounded by the input.
func FuzzParseContextTable(f *testing.F) {
	meta := fixture(f, upstreamMeta)
	f.Add(meta[163*24:660112], uint32(21))
	f.Add(AppendContext(nil, Context{InOffset: 10, InLen: 5, OutLen: 9, DictSize: 2, Bits: 1, PrevByte: 0x80}), uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, count uint32) {
		ctxs, dicts, err := ParseContextTable(b, count)
		if err != nil {
			return
		}
		if uint64(len(ctxs))*ContextSize > uint64(len(b)) {
			t.Fatalf("%d contexts from %d bytes", len(ctxs), len(b))
		}
		var out []byte
		for _, c := range ctxs {
			if len(c.Window(dicts)) != int(c.DictSize) {
				t.Fatal("window size")
			}
			out = AppendContext(out, c)
		}
		for i := range ctxs {
			// Reserved bytes 38-39 are not kept.
			if !bytes.Equal(out[i*ContextSize:i*ContextSize+38], b[i*ContextSize:i*ContextSize+38]) {
				t.Fatalf("context %d does not write back", i)
			}
		}
	})
}
