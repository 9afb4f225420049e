package zran

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	kflate "github.com/klauspost/compress/flate"
	kgzip "github.com/klauspost/compress/gzip"
)

// corpus is one gzip input for the differential tests.
type corpus struct {
	name string
	gz   []byte
}

func gzipStd(t testing.TB, level int, parts ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range parts {
		w, err := stdgzip.NewWriterLevel(&buf, level)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func gzipKlauspost(t testing.TB, level int, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := kgzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Name, w.Comment, w.Extra = "name.tar", "a comment", []byte("XY\x04\x00abcd")
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withHeaderCRC rewrites a gzip member's header to carry FHCRC (RFC 1952
// §2.3.1): the low 16 bits of the CRC-32 of the header bytes before it.
func withHeaderCRC(gz []byte, hdrLen int) []byte {
	out := append([]byte(nil), gz[:hdrLen]...)
	out[3] |= flagHCRC
	c := crc32.ChecksumIEEE(out)
	out = append(out, byte(c), byte(c>>8))
	return append(out, gz[hdrLen:]...)
}

func textData(rng *rand.Rand, n int) []byte {
	words := strings.Fields("the quick brown fox jumps over lazy dog nydus layer chunk blob gzip deflate window context image registry tar file")
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(9) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func randomData(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "nydus", "zran", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var fixtureNames = []string{"zran-single-stream.tar.gz", "zran-two-streams.tar.gz", "zran-zero-file.tar.gz", "bgzip.tar.gz", "zlib_sample.txt.gz"}

// corpora are made once per test binary: compressing them is most of the
// cost.
var (
	corporaOnce  sync.Once
	corporaCache []corpus
)

func corpora(t testing.TB) []corpus {
	corporaOnce.Do(func() { corporaCache = makeCorpora(t) })
	if corporaCache == nil {
		t.Fatal("making the corpora failed")
	}
	return corporaCache
}

func makeCorpora(t testing.TB) []corpus {
	rng := rand.New(rand.NewPCG(1, 2))
	text := textData(rng, 3<<20)
	random := randomData(rng, 1<<20)
	zeros := make([]byte, 20<<20)
	mixed := append(append(append([]byte(nil), text[:1<<20]...), random[:300<<10]...), zeros[:5<<20]...)
	var cs []corpus
	for _, level := range []int{0, 1, 6, 9, stdgzip.HuffmanOnly} {
		cs = append(cs,
			corpus{fmt.Sprintf("text-std-%d", level), gzipStd(t, level, text)},
			corpus{fmt.Sprintf("mixed-std-%d", level), gzipStd(t, level, mixed)},
		)
	}
	cs = append(cs,
		corpus{"random-std-6", gzipStd(t, 6, random)},
		corpus{"zeros-std-9", gzipStd(t, 9, zeros)},
		corpus{"empty-std", gzipStd(t, 6, nil)},
		corpus{"text-klauspost-1-headers", gzipKlauspost(t, 1, text)},
		corpus{"mixed-klauspost-9-headers", gzipKlauspost(t, 9, mixed)},
		corpus{"mixed-klauspost-0-headers", gzipKlauspost(t, 0, mixed)},
		corpus{"text-fhcrc", withHeaderCRC(gzipStd(t, 6, text[:100<<10]), 10)},
	)
	var parts [][]byte
	for i := 0; i < len(mixed); i += 7 << 10 {
		parts = append(parts, mixed[i:min(i+7<<10+i%5000, len(mixed))])
	}
	cs = append(cs, corpus{"many-members", gzipStd(t, 6, parts...)})
	cs = append(cs, corpus{"members-with-empty", gzipStd(t, 6, text[:5000], nil, nil, random[:70000], nil)})
	for _, name := range fixtureNames {
		cs = append(cs, corpus{"fixture-" + name, fixture(t, name)})
	}
	return cs
}

// TestDecodeMatchesGzipReaders: the decoder's output equals that of Go's
// compress/gzip and of klauspost's gzip reader on every corpus.
func TestDecodeMatchesGzipReaders(t *testing.T) {
	for _, c := range corpora(t) {
		t.Run(c.name, func(t *testing.T) {
			std, err := readAllStd(c.gz)
			if err != nil {
				t.Fatalf("compress/gzip: %v", err)
			}
			kr, err := kgzip.NewReader(bytes.NewReader(c.gz))
			if err != nil {
				t.Fatal(err)
			}
			kp, err := io.ReadAll(kr)
			if err != nil {
				t.Fatalf("klauspost gzip: %v", err)
			}
			if !bytes.Equal(std, kp) {
				t.Fatal("compress/gzip and klauspost disagree")
			}
			// Read in odd sizes through Read, and through WriteTo.
			got, err := io.ReadAll(struct{ io.Reader }{NewReader(iotestHalf(c.gz), nil)})
			if err != nil {
				t.Fatalf("zran: %v", err)
			}
			if !bytes.Equal(got, std) {
				t.Fatalf("zran output differs: %d bytes, want %d", len(got), len(std))
			}
			var buf bytes.Buffer
			if _, err := NewReader(bytes.NewReader(c.gz), nil).WriteTo(&buf); err != nil {
				t.Fatalf("zran WriteTo: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), std) {
				t.Fatal("zran WriteTo output differs")
			}
		})
	}
}

func readAllStd(gz []byte) ([]byte, error) {
	r, err := stdgzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// iotestHalf returns a reader that hands out its bytes in small irregular
// pieces, so refills happen everywhere.
func iotestHalf(b []byte) io.Reader { return &pieceReader{b: b} }

type pieceReader struct {
	b []byte
	n int
}

func (p *pieceReader) Read(buf []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	p.n++
	k := min(len(buf), len(p.b), 1+p.n*37%9000)
	copy(buf, p.b[:k])
	p.b = p.b[k:]
	return k, nil
}

// points decodes gz fully and returns every checkpoint (windows copied)
// and the output.
func points(t testing.TB, gz []byte) ([]Checkpoint, []byte) {
	t.Helper()
	var cps []Checkpoint
	r := NewReader(bytes.NewReader(gz), func(cp Checkpoint) {
		cp.Window = bytes.Clone(cp.Window)
		cps = append(cps, cp)
	})
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return cps, out
}

// TestResumeFromEveryPoint: decoding restarted at every reported point
// (input from In on, the pending bits and the window) reproduces the
// output up to the next point and reports that next point identically, so
// by induction it reproduces the whole rest of the stream; from a sample of
// points it is also decoded to the very end. The point's PrevByte and
// Window are checked against the input and output bytes.
func TestResumeFromEveryPoint(t *testing.T) {
	for _, c := range corpora(t) {
		t.Run(c.name, func(t *testing.T) {
			cps, out := points(t, c.gz)
			if len(cps) == 0 {
				t.Fatal("no checkpoints")
			}
			for i, cp := range cps {
				if cp.Bits > 0 && cp.PrevByte != c.gz[cp.In-1] {
					t.Fatalf("point %d: PrevByte %#x, input has %#x", i, cp.PrevByte, c.gz[cp.In-1])
				}
				if !bytes.Equal(cp.Window, out[cp.Out-int64(len(cp.Window)):cp.Out]) {
					t.Fatalf("point %d: window is not the output before it", i)
				}
				var next []Checkpoint
				r, err := NewResumeReader(bytes.NewReader(c.gz[cp.In:]), cp, func(p Checkpoint) {
					p.Window = bytes.Clone(p.Window)
					next = append(next, p)
				})
				if err != nil {
					t.Fatal(err)
				}
				toEnd := i%max(1, len(cps)/8) == 0
				var rest []byte
				buf := make([]byte, 4096)
				for toEnd || len(next) == 0 {
					n, err := r.Read(buf)
					rest = append(rest, buf[:n]...)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("point %d (%s): %v", i, cpSummary(cp), err)
					}
				}
				if !bytes.Equal(rest, out[cp.Out:cp.Out+int64(len(rest))]) {
					t.Fatalf("point %d (%s): resumed output differs", i, cpSummary(cp))
				}
				if toEnd && cp.Out+int64(len(rest)) != int64(len(out)) {
					t.Fatalf("point %d (%s): resumed output ends at %d, want %d", i, cpSummary(cp), cp.Out+int64(len(rest)), len(out))
				}
				if i+1 < len(cps) && (len(next) == 0 || !samePoint(next[0], cps[i+1])) {
					t.Fatalf("point %d (%s): the resumed decoder's next point differs", i, cpSummary(cp))
				}
				if i+1 == len(cps) && len(next) != 0 {
					t.Fatalf("point %d: resumed decoder reports a point after the last one", i)
				}
			}
		})
	}
}

func samePoint(a, b Checkpoint) bool {
	return a.In == b.In && a.Bits == b.Bits && a.Out == b.Out && a.Final == b.Final &&
		a.MemberStart == b.MemberStart && bytes.Equal(a.Window, b.Window) && (a.Bits == 0 || a.PrevByte == b.PrevByte)
}

func cpSummary(cp Checkpoint) string {
	return fmt.Sprintf("in %d bits %d out %d window %d final %v", cp.In, cp.Bits, cp.Out, len(cp.Window), cp.Final)
}

// TestBadInput: each kind of damage gives its error, never output that
// passes for good.
func TestBadInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	good := gzipStd(t, 6, textData(rng, 200<<10))
	stored := gzipStd(t, 0, textData(rng, 1000))
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	// stdAccepts: Go's compress/gzip takes this input although RFC 1952
	// says a decoder must reject it.
	type badCase struct {
		name       string
		gz         []byte
		want       error
		stdAccepts bool
	}
	cases := []badCase{
		{name: "truncated-deflate", gz: good[:len(good)/2], want: io.ErrUnexpectedEOF},
		{name: "truncated-trailer", gz: good[:len(good)-3], want: io.ErrUnexpectedEOF},
		{name: "truncated-header", gz: good[:5], want: io.ErrUnexpectedEOF},
		{name: "bad-crc", gz: mod(good, func(b []byte) []byte { b[len(b)-8] ^= 1; return b }), want: ErrChecksum},
		{name: "bad-isize", gz: mod(good, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), want: ErrSize},
		{name: "garbage-after", gz: append(bytes.Clone(good), 0, 0, 0, 0), want: ErrTrailingGarbage},
		{name: "half-magic-after", gz: append(bytes.Clone(good), 0x1f), want: ErrTrailingGarbage},
		{name: "block-type-3", gz: mod(stored, func(b []byte) []byte { b[10] = 0x07; return b }), want: ErrBlockType},
		{name: "stored-nlen", gz: mod(stored, func(b []byte) []byte { b[13] ^= 0xff; return b }), want: ErrStoredLength},
		{name: "not-gzip", gz: []byte("plain text, not gzip"), want: ErrNotGzip},
		{name: "empty", gz: nil, want: ErrNotGzip},
		{name: "method", gz: mod(good, func(b []byte) []byte { b[2] = 7; return b }), want: ErrHeader},
		{name: "reserved-flag", gz: mod(good, func(b []byte) []byte { b[3] |= 0x80; return b }), want: ErrHeader, stdAccepts: true},
		{name: "bad-fhcrc", gz: mod(withHeaderCRC(good, 10), func(b []byte) []byte { b[10] ^= 1; return b }), want: ErrHeader},
		{name: "distance-too-far", gz: farMatch(), want: ErrDistance},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := io.ReadAll(NewReader(bytes.NewReader(c.gz), nil))
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if _, stdErr := readAllStd(c.gz); stdErr == nil && !c.stdAccepts {
				t.Fatalf("compress/gzip accepts this input; the case is wrong")
			}
		})
	}
}

// farMatch is a member whose fixed-code block starts with a match (length
// 3, distance 1) when no output exists yet (RFC 1951 §3.2.6 codes).
func farMatch() []byte {
	var acc uint64
	var n uint
	put := func(v uint64, k uint) { acc |= v << n; n += k }
	putCode := func(code uint64, k uint) { // Huffman codes go most significant bit first
		for i := int(k) - 1; i >= 0; i-- {
			put(code>>uint(i)&1, 1)
		}
	}
	put(1, 1)     // BFINAL
	put(1, 2)     // fixed codes
	putCode(1, 7) // symbol 257: length 3
	putCode(0, 5) // distance code 0: distance 1
	putCode(0, 7) // end of block
	b := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	for i := uint(0); i < n; i += 8 {
		b = append(b, byte(acc>>i))
	}
	return append(b, make([]byte, 8)...)
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed+1)) }

// TestPointsMatchKlauspostCheckpoints: on members without stored blocks
// (where klauspost's offsets are known to be right, docs/zran.md), every
// block end our decoder reports is the one klauspost's flate reports with
// WithEobCallback: same output offset, same bit position, same window.
func TestPointsMatchKlauspostCheckpoints(t *testing.T) {
	rng := newRand(11)
	data := append(textData(rng, 2<<20), make([]byte, 5<<20)...)
	for _, level := range []int{1, 6, 9} {
		gz := gzipStd(t, level, data)
		raw := gz[10 : len(gz)-8] // std headers have no optional fields
		var want []kflate.InflateCheckpoint
		kr := kflate.NewReaderOpts(bytes.NewReader(raw), kflate.WithEobCallback(func(cp kflate.InflateCheckpoint) {
			cp.Window = bytes.Clone(cp.Window)
			want = append(want, cp)
		}))
		if _, err := io.Copy(io.Discard, kr); err != nil {
			t.Fatal(err)
		}
		cps, _ := points(t, gz)
		var got []Checkpoint
		for _, cp := range cps {
			if !cp.Final && !cp.MemberStart {
				got = append(got, cp)
			}
		}
		// klauspost also calls back after the final block; that point is
		// checked against the trailer's place instead.
		want = slices.DeleteFunc(want, func(cp kflate.InflateCheckpoint) bool { return cp.Final })
		if last := cps[len(cps)-1]; !last.Final || last.In != int64(len(gz)-8) || last.Out != int64(len(data)) {
			t.Fatalf("level %d: last point %s, want the final block's end at the trailer (in %d, out %d)", level, cpSummary(last), len(gz)-8, len(data))
		}
		if len(got) != len(want) || len(got) < 10 {
			t.Fatalf("level %d: %d block ends, klauspost reports %d", level, len(got), len(want))
		}
		for i, k := range want {
			bitPos := (k.CompressedOffset+10)*8 + int64(k.BitOffset)
			ours := got[i].In*8 - int64(got[i].Bits)
			w := k.Window[max(0, len(k.Window)-WindowSize):]
			if ours != bitPos || got[i].Out != k.UncompressedOffset || !bytes.Equal(got[i].Window, w) {
				t.Fatalf("level %d, block end %d: ours %s, klauspost bit %d out %d window %d", level, i, cpSummary(got[i]), bitPos, k.UncompressedOffset, len(w))
			}
		}
	}
}
