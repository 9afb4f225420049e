package zran

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"
)

// tarWalk reads every tar archive in r (with ignoreZeros, archives that
// follow one another, as upstream's tar reader with ignore_zeros does) and
// calls file for each regular file. It returns the entry and regular-file
// counts.
func tarWalk(t testing.TB, r io.Reader, ignoreZeros bool, file func(io.Reader, int64)) (entries, files int) {
	t.Helper()
	// No read-ahead: the Builder takes the consumer's position from what
	// it has handed out, as upstream's unbuffered tar reader lets it.
	src := r
	for {
		tr := tar.NewReader(src)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			entries++
			if h.Typeflag == tar.TypeReg {
				files++
				file(tr, h.Size)
			}
		}
		if !ignoreZeros {
			return
		}
		blk := make([]byte, 512)
		for { // skip zero blocks up to the next archive or the end
			if _, err := io.ReadFull(r, blk); err != nil {
				return
			}
			if !bytes.Equal(blk, make([]byte, 512)) {
				break
			}
		}
		src = io.MultiReader(bytes.NewReader(blk), r)
	}
}

// TestFixtureTarEntries: upstream's reader tests count 7 entries and 3
// regular files in the single-stream fixture, 7/3 in the two-stream one
// when the tar reader stops at the first end-of-archive and 10/5 when it
// skips zero blocks.
func TestFixtureTarEntries(t *testing.T) {
	for _, c := range []struct {
		name           string
		ignoreZeros    bool
		entries, files int
	}{
		{"zran-single-stream.tar.gz", false, 7, 3},
		{"zran-two-streams.tar.gz", false, 7, 3},
		{"zran-two-streams.tar.gz", true, 10, 5},
	} {
		z := NewReader(bytes.NewReader(fixture(t, c.name)), nil)
		e, f := tarWalk(t, z, c.ignoreZeros, func(io.Reader, int64) {})
		if e != c.entries || f != c.files {
			t.Errorf("%s (ignore zeros %v): %d entries, %d files; upstream counts %d, %d", c.name, c.ignoreZeros, e, f, c.entries, c.files)
		}
	}
}

type builtChunk struct {
	Chunk
	data []byte
}

// buildIndex walks the tar in gz through a Builder, reading each regular
// file in chunks of at most chunkSize bytes, each chunk in reads of at
// most readSize bytes, as upstream's builder and tests drive their
// generator. It returns the index and the chunks with their bytes.
func buildIndex(t testing.TB, gz []byte, policy Policy, chunkSize, readSize int) (*Index, []builtChunk) {
	t.Helper()
	b, err := NewBuilder(bytes.NewReader(gz), policy, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var chunks []builtChunk
	buf := make([]byte, readSize)
	tarWalk(t, b, true, func(r io.Reader, size int64) {
		for size > 0 {
			n := min(int64(chunkSize), size)
			if _, err := b.BeginChunk(uint64(chunkSize)); err != nil {
				t.Fatal(err)
			}
			var data []byte
			for int64(len(data)) < n {
				k, err := io.ReadFull(r, buf[:min(int64(readSize), n-int64(len(data)))])
				if err != nil {
					t.Fatal(err)
				}
				data = append(data, buf[:k]...)
			}
			c, err := b.EndChunk()
			if err != nil {
				t.Fatal(err)
			}
			chunks = append(chunks, builtChunk{c, data})
			size -= n
		}
	})
	x, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return x, chunks
}

// decodeContext decodes context i of x the way nydusd does: exactly InLen
// input bytes from InOffset, primed with the pending bits and the window,
// OutLen bytes of output (docs/zran.md, "Contexts and the policy").
func decodeContext(t testing.TB, gz []byte, x *Index, i int) []byte {
	t.Helper()
	c := x.Contexts[i]
	w, err := x.Window(i)
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{In: int64(c.InOffset), Bits: c.Bits, PrevByte: c.PrevByte, Out: int64(c.OutOffset), Window: w}
	if c.InOffset+uint64(c.InLen) > uint64(len(gz)) {
		t.Fatalf("context %d: input range [%d, +%d) past the %d-byte layer", i, c.InOffset, c.InLen, len(gz))
	}
	r, err := NewResumeReader(bytes.NewReader(gz[c.InOffset:c.InOffset+uint64(c.InLen)]), cp, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, c.OutLen)
	if _, err := io.ReadFull(r, out); err != nil {
		t.Fatalf("context %d (in %d+%d, out %d+%d, bits %d, window %d): %v", i, c.InOffset, c.InLen, c.OutOffset, c.OutLen, c.Bits, c.DictSize, err)
	}
	return out
}

// checkIndex proves an index against the stream: every context decodes
// from its own input range to exactly the stream's bytes, every chunk's
// bytes are at its place in its context, chunk compressed ranges are
// sorted and disjoint, and a chunk's context is never an earlier one than
// its predecessor's.
func checkIndex(t testing.TB, gz []byte, x *Index, chunks []builtChunk) {
	t.Helper()
	all := decodeAll(t, gz)
	outs := make([][]byte, len(x.Contexts))
	for i, c := range x.Contexts {
		outs[i] = decodeContext(t, gz, x, i)
		if !bytes.Equal(outs[i], all[c.OutOffset:c.OutOffset+uint64(c.OutLen)]) {
			t.Fatalf("context %d decodes to other bytes than the stream has there", i)
		}
	}
	for i, c := range chunks {
		if int(c.Context) >= len(outs) {
			t.Fatalf("chunk %d: context %d of %d", i, c.Context, len(outs))
		}
		out := outs[c.Context]
		if uint64(c.Offset)+uint64(c.Size) > uint64(len(out)) || !bytes.Equal(out[c.Offset:c.Offset+c.Size], c.data) {
			t.Fatalf("chunk %d: bytes at context %d offset %d differ from the file's", i, c.Context, c.Offset)
		}
		if i > 0 {
			p := chunks[i-1]
			if p.CompOffset+uint64(p.CompSize) > c.CompOffset || p.Context > c.Context {
				t.Fatalf("chunk %d: compressed range or context out of order after chunk %d", i, i-1)
			}
		}
	}
}

// TestUpstreamGeneratorFigures repeats upstream's generator tests:
// zran-two-streams with thresholds 1024/2048/4096 and 512-byte chunks
// makes 3 contexts, each decodable; every context of bgzip with the same
// thresholds decodes.
func TestUpstreamGeneratorFigures(t *testing.T) {
	tiny := Policy{MinComp: 1024, MaxComp: 2048, MaxUncomp: 4096}
	gz := fixture(t, "zran-two-streams.tar.gz")
	x, chunks := buildIndex(t, gz, tiny, 512, 512)
	if len(x.Contexts) != 3 {
		t.Errorf("%d contexts, upstream makes 3", len(x.Contexts))
	}
	checkIndex(t, gz, x, chunks)

	gz = fixture(t, "bgzip.tar.gz")
	x, chunks = buildIndex(t, gz, tiny, 512, 512)
	checkIndex(t, gz, x, chunks)
	t.Logf("bgzip, tiny policy: %d contexts, %d chunks", len(x.Contexts), len(chunks))
}

// TestBuildDefaultPolicy: 1 MiB chunks with upstream's default policy on
// every corpus with a tar inside (the fixtures) and on generated tars
// (a big file across many chunks, long zero runs, per-file gzip members).
func TestBuildDefaultPolicy(t *testing.T) {
	inputs := map[string][]byte{}
	for _, n := range []string{"zran-single-stream.tar.gz", "zran-two-streams.tar.gz", "zran-zero-file.tar.gz", "bgzip.tar.gz"} {
		inputs[n] = fixture(t, n)
	}
	tarball := genTar(t)
	inputs["gen-level-6"] = gzipStd(t, 6, tarball)
	inputs["gen-level-0"] = gzipStd(t, 0, tarball)
	inputs["gen-members-7KiB"] = gzipStd(t, 6, split(tarball, 7<<10)...)
	inputs["gen-members-4KiB"] = gzipStd(t, 1, split(tarball, 4<<10)...)
	for name, gz := range inputs {
		t.Run(name, func(t *testing.T) {
			x, chunks := buildIndex(t, gz, DefaultPolicy, 1<<20, 64<<10)
			checkIndex(t, gz, x, chunks)
			tbl, err := x.AppendTable(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctxs, dicts, err := ParseContextTable(tbl, uint32(len(x.Contexts)))
			if err != nil {
				t.Fatal(err)
			}
			var off uint64
			for i, c := range ctxs {
				w, _ := x.Window(i)
				want := x.Contexts[i]
				want.DictOffset = off
				off += uint64(want.DictSize)
				if c != want || !bytes.Equal(c.Window(dicts), w) {
					t.Fatalf("context %d reads back as %+v, want %+v (window equal %v)", i, c, want, bytes.Equal(c.Window(dicts), w))
				}
			}
			if off != uint64(len(dicts)) {
				t.Fatalf("dictionary table %d bytes, windows %d", len(dicts), off)
			}
			t.Logf("%d contexts, %d chunks", len(x.Contexts), len(chunks))
		})
	}
}

func split(b []byte, n int) [][]byte {
	var parts [][]byte
	for i := 0; i < len(b); i += n {
		parts = append(parts, b[i:min(i+n, len(b))])
	}
	return parts
}

// genTar is a tar with small text files, a 5 MiB mixed file and 9 MiB of
// zeros.
func genTar(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	rng := newRand(5)
	for i := range 40 {
		add("small/"+string(rune('a'+i%26))+string(rune('a'+i/26)), textData(rng, 100+i*997))
	}
	big := append(textData(rng, 3<<20), randomData(rng, 2<<20)...)
	add("big.bin", big)
	add("zeros.bin", make([]byte, 9<<20))
	add("empty", nil)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBuilderRejectsBadStream: the builder passes on the decoder's errors
// and Finish fails for a damaged stream.
func TestBuilderRejectsBadStream(t *testing.T) {
	gz := fixture(t, "zran-two-streams.tar.gz")
	bad := bytes.Clone(gz)
	bad[228-7] ^= 0xff // the first member's CRC-32
	b, err := NewBuilder(bytes.NewReader(bad), DefaultPolicy, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, b); !errors.Is(err, ErrChecksum) {
		t.Fatalf("error %v, want %v", err, ErrChecksum)
	}
	if _, err := b.Finish(); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Finish: %v, want %v", err, ErrChecksum)
	}
}

// TestContextEndingAtMemberEnd: when a file's last chunk ends exactly where
// a gzip member ends, its context's input range runs through the trailer
// and the next member's 10-byte header into one byte of its deflate data,
// as nydusd's decoder needs (docs/zran.md, "member ends").
func TestContextEndingAtMemberEnd(t *testing.T) {
	gz, first, data := memberEndLayer(t)
	x, chunks := buildIndex(t, gz, DefaultPolicy, 1<<20, 4096)
	checkIndex(t, gz, x, chunks)
	if len(x.Contexts) != 1 {
		t.Fatalf("%d contexts, want 1", len(x.Contexts))
	}
	c := x.Contexts[0]
	if c.OutOffset+uint64(c.OutLen) != uint64(512+len(data)) {
		t.Fatalf("context ends at output %d, want %d", c.OutOffset+uint64(c.OutLen), 512+len(data))
	}
	if want := uint64(len(first)) + 10 + 1; c.InOffset+uint64(c.InLen) != want {
		t.Errorf("context input ends at %d, want %d (second member's deflate data + 1)", c.InOffset+uint64(c.InLen), want)
	}
}

// memberEndLayer is a tar of one file, gzipped as two members split where
// the file's data ends; it returns the layer, its first member and the
// file's data.
func memberEndLayer(t testing.TB) (gz, first, data []byte) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data = textData(newRand(7), 1000)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	tarball := buf.Bytes()
	first = gzipStd(t, 6, tarball[:512+len(data)])
	gz = append(bytes.Clone(first), gzipStd(t, 6, tarball[512+len(data):])...)
	return gz, first, data
}

func decodeAll(t testing.TB, gz []byte) []byte {
	t.Helper()
	all, err := io.ReadAll(NewReader(bytes.NewReader(gz), nil))
	if err != nil {
		t.Fatal(err)
	}
	return all
}
