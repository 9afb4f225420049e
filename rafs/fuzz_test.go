package rafs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func addSeeds(f *testing.F, paths ...string) {
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzBootstrap opens arbitrary bytes as a bootstrap and exercises every
// read path: it must return errors, never panic or allocate without bound.
func FuzzBootstrap(f *testing.F) {
	addSeeds(f, fixtureBoot)
	if boot, err := inlineBootstrap(); err == nil {
		f.Add(boot)
	}
	blob, err := os.ReadFile(fixtureBlobPath)
	if err != nil {
		f.Fatal(err)
	}
	// Every blob of a mutated bootstrap reads the fixture's blob, so the
	// chunk-table checks and chunk reads run too.
	opener := BlobOpenerFunc(func(int, BlobEntry) (io.ReaderAt, int64, error) {
		return bytes.NewReader(blob), int64(len(blob)), nil
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		var img *Image
		var err error
		// Opening and reading the tables allocates in proportion to
		// the bootstrap, whatever sizes and counts it claims.
		n := allocated(func() {
			if img, err = OpenImage(bytes.NewReader(data), int64(len(data)), opener); err == nil {
				img.Bootstrap().ChunkTable()
				img.Bootstrap().PrefetchTable()
			}
		})
		if max := allocBound(len(data), 0); n > max {
			t.Fatalf("opening a bootstrap of %d bytes allocated %d bytes (%v)", len(data), n, err)
		}
		if err != nil {
			return
		}
		rd := img.Bootstrap()
		for i := range rd.Blobs {
			img.Blob(i)
		}
		rd.Walk(func(p string, n *Node) error {
			switch n.Type() {
			case ModeLnk:
				rd.Readlink(n)
			case ModeReg:
				rd.Chunks(n)
				img.CopyFile(io.Discard, n)
			}
			return nil
		})
		rd.Lookup("/a/b")
		img.Verify(t.Context())
	})
}

func inlineBootstrap() ([]byte, error) {
	f, err := os.Open(filepath.Join(fixtureDir, "toc", fixtureTOCBlob))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, _ := f.Stat()
	toc, _, err := ReadTOC(f, st.Size(), 0)
	if err != nil {
		return nil, err
	}
	for _, e := range toc {
		if e.Name == TOCImageBoot {
			return ReadTOCData(f, e, 1<<20)
		}
	}
	return nil, io.EOF
}

// FuzzBlobMeta parses arbitrary bytes as a blob: TOC, its sections, the
// compression-context header and chunk-info array, and the chunks.
func FuzzBlobMeta(f *testing.F) {
	addSeeds(f, fixtureBlobPath, filepath.Join(fixtureDir, "toc", fixtureTOCBlob))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		size := int64(len(data))
		toc, _, err := ReadTOC(r, size, 0)
		if err != nil {
			return
		}
		var header []byte
		for _, e := range toc {
			var b []byte
			var err error
			// A section may claim up to the 1 MiB limit given here.
			n := allocated(func() { b, err = ReadTOCData(r, e, 1<<20) })
			if max := allocBound(len(data)+1<<20, len(b)); n > max {
				t.Fatalf("TOC section %q of a %d-byte blob allocated %d bytes (%v)", e.Name, len(data), n, err)
			}
			if err == nil && e.Name == TOCBlobMetaHeader {
				header = b
			}
		}
		h, err := UnmarshalBlobMetaHeader(header)
		if err != nil {
			return
		}
		entry := BlobEntry{
			BlobID: "fuzz", ChunkSize: DefaultChunkSize, ChunkCount: h.CIEntries, Compressor: CompressZstd,
			Features: h.Features, CompressedSize: uint64(size), UncompressedSize: 1 << 30,
			MetaCompressor: h.CICompressor, MetaOffset: h.CIOffset, MetaCompressedSize: h.CICompressedSize, MetaSize: h.CISize,
		}
		var src ChunkInfoSource
		n := allocated(func() { src, err = LoadChunkInfo(r, size, entry) })
		if max := allocBound(len(data), int(entry.MetaSize)*2); err != nil && n > allocBound(len(data), 0) || n > max {
			t.Fatalf("chunk info of a %d-byte blob claiming %d chunks allocated %d bytes (%v)", len(data), h.CIEntries, n, err)
		}
		if err != nil {
			return
		}
		// A table that agrees with every location, with digests nothing
		// matches: chunks are read and decompressed, then refused.
		table := map[uint32]ChunkInfo{}
		for i := range min(src.Len(), 16) {
			c := src.Chunk(uint32(i))
			rec := ChunkInfo{Index: uint32(i), CompressedOffset: c.CompressedOffset, CompressedSize: c.CompressedSize,
				UncompressedOffset: c.UncompressedOffset, UncompressedSize: c.UncompressedSize}
			if c.Compressed {
				rec.Flags = ChunkCompressed
			}
			table[uint32(i)] = rec
		}
		b, err := newBlobReader(0, entry, r, size, BlockSize, table, LoadChunkInfo)
		if err != nil {
			t.Fatalf("a table copied from the chunk info was refused: %v", err)
		}
		for i := range table {
			if _, err := b.ReadChunk(i, nil); err == nil {
				t.Fatalf("chunk %d matched an all-zero digest", i)
			}
		}
	})
}

// FuzzV5Bootstrap opens arbitrary bytes as a RAFS v5 bootstrap, walks and
// reads the tree against upstream's v5 blob and recomputes the Merkle tree:
// errors only, never a panic, a hang on a cyclic tree, or an allocation out
// of proportion to the input.
func FuzzV5Bootstrap(f *testing.F) {
	addSeeds(f, v5Sha256, v5Blake3)
	blob := v5Blob(f)
	opener := BlobOpenerFunc(func(int, BlobEntry) (io.ReaderAt, int64, error) {
		return bytes.NewReader(blob), int64(len(blob)), nil
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 || le.Uint32(data) != V5Magic {
			return
		}
		var img *Image
		var err error
		n := allocated(func() {
			if img, err = OpenImage(bytes.NewReader(data), int64(len(data)), opener); err == nil {
				img.Bootstrap().ChunkTable()
				img.Bootstrap().PrefetchTable()
				_, err = img.Bootstrap().VerifyMerkle()
			}
		})
		if max := allocBound(len(data), 0); n > max {
			t.Fatalf("opening a v5 bootstrap of %d bytes allocated %d bytes (%v)", len(data), n, err)
		}
		if err != nil {
			return
		}
		rd := img.Bootstrap()
		rd.Walk(func(p string, n *Node) error {
			switch n.Type() {
			case ModeLnk:
				rd.Readlink(n)
			case ModeReg:
				// Small files only: every exec hashing the whole
				// 3.5 MB blob would leave few execs for the parser.
				if n.Inode.Size <= 64<<10 {
					img.CopyFile(io.Discard, n)
				}
			}
			return nil
		})
		rd.Lookup("/normal-file-test/test.sh")
	})
}
