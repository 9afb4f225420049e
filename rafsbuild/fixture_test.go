package rafsbuild

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
)

const (
	fixtureBoot = "../testdata/nydus/bootstrap/rafs-v6-2.2.boot"
	fixtureBlob = "../testdata/nydus/blobs/be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
)

// fixtureBlobWriter stands for the fixture's one blob.
var fixtureBlobWriter = &blobWriter{}

// TestRebuildUpstreamBootstrap rebuilds upstream's rafs-v6-2.2.boot from its
// tree (entries and chunk records read off the fixture) with our layout
// engine and serialiser, and compares every byte. The fixture predates v2.4,
// so the expected bytes get the four documented version toggles
// (docs/rafs-format.md §6): root i_ino 1, 512 KiB mapped_blkaddr alignment, the
// ENCRYPTION_NONE flag, and CRC-32C on chunk records.
func TestRebuildUpstreamBootstrap(t *testing.T) {
	want, err := os.ReadFile(fixtureBoot)
	if err != nil {
		t.Fatal(err)
	}
	blobBytes, err := os.ReadFile(fixtureBlob)
	if err != nil {
		t.Fatal(err)
	}
	img, err := rafs.OpenImage(bytes.NewReader(want), int64(len(want)), rafs.BlobOpenerFunc(
		func(int, rafs.BlobEntry) (io.ReaderAt, int64, error) {
			return bytes.NewReader(blobBytes), int64(len(blobBytes)), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	rd := img.Bootstrap()
	blob, err := img.Blob(0)
	if err != nil {
		t.Fatal(err)
	}
	table, err := rd.ChunkTable()
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[uint32]rafs.ChunkInfo{}
	crcs := map[uint32]uint32{}
	for _, c := range table {
		byIndex[c.Index] = c
		data, err := blob.ReadChunk(c.Index, nil)
		if err != nil {
			t.Fatal(err)
		}
		crcs[c.Index] = rafs.CRC32C(data)
	}

	tr := newTree()
	var rootOff uint64
	err = rd.Walk(func(p string, n *rafs.Node) error {
		ino := n.Inode
		e := Entry{Path: path.Clean(p)[1:], Mode: uint32(ino.Mode), UID: ino.UID, GID: ino.GID,
			Mtime: int64(ino.Mtime), MtimeNsec: ino.MtimeNsec, Size: ino.Size, Xattrs: n.Xattrs}
		if p == "/" {
			rootOff = uint64(rd.Super.MetaBlkAddr)*rafs.BlockSize + n.Nid*rafs.InodeSlotSize
			e.Size = 0
		}
		nd, err := tr.add(e)
		if err != nil || !n.IsReg() {
			return err
		}
		addrs, err := rd.Chunks(n)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			c := byIndex[a.CIIndex]
			nd.data.chunks = append(nd.data.chunks, &chunkRec{
				blob: fixtureBlobWriter, digest: c.Digest, crc: crcs[c.Index], ciIndex: c.Index,
				coff: c.CompressedOffset, csize: c.CompressedSize,
				uoff: c.UncompressedOffset, usize: c.UncompressedSize,
				compressed: c.Flags&rafs.ChunkCompressed != 0,
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sortChildren(tr.root)
	lay, err := layout(tr, uint64(rd.ChunkSize))
	if err != nil {
		t.Fatal(err)
	}
	got, err := writeBootstrap(tr, lay, &bootstrapParams{
		flags:     rafs.FlagCompressionZstd | rafs.FlagHashBlake3,
		chunkSize: uint64(rd.ChunkSize),
		blobs:     rd.Blobs,
		blobIndex: map[*blobWriter]uint32{fixtureBlobWriter: 0},
	})
	if err != nil {
		t.Fatal(err)
	}

	// The version toggles.
	le := binary.LittleEndian.PutUint32
	le(want[rootOff+20:], 1) // root i_ino
	le(want[rafs.DeviceSlotOffset+68:], uint32(rafs.AlignUp(uint64(len(want)), 0x80000)/rafs.BlockSize))
	want[rafs.ExtSuperBlockOffset+3] |= 0x01 // ENCRYPTION_NONE = 0x0100_0000
	ct := rd.Ext.ChunkTableOffset
	for i := range table {
		rec := want[ct+uint64(i)*rafs.ChunkTableEntrySize:]
		rec[36] |= byte(rafs.ChunkHasCRC32)
		le(rec[76:], crcs[table[i].Index])
	}

	if len(got) != len(want) {
		t.Fatalf("rebuilt bootstrap is %d bytes, upstream's %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("first difference at offset %#x: got %#02x, want %#02x", i, got[i], want[i])
		}
	}
}
