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
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		rd.ChunkTable()
		rd.PrefetchTable()
		for i := range rd.Blobs {
			rd.ChunkDigests(i)
		}
		rd.Walk(func(p string, n *Node) error {
			switch n.Type() {
			case ModeLnk:
				rd.Readlink(n)
			case ModeReg:
				rd.Chunks(n)
				rd.CopyFile(io.Discard, n, nil)
			}
			return nil
		})
		rd.Lookup("/a/b")
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
			b, err := ReadTOCData(r, e, 1<<20)
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
		b, err := OpenBlob(r, size, entry, nil)
		if err != nil {
			return
		}
		for i := range min(len(b.Chunks), 16) {
			b.ReadChunk(uint32(i), nil)
		}
	})
}
