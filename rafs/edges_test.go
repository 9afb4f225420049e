package rafs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// Edge cases of the format, each at the exact limit the specification (or
// the kernel's EROFS layout it follows) sets: accepted at the limit,
// refused one past it. The byte layouts are written here from the
// format's tables, not with our encoders.

// direntBlock lays out an EROFS dirent block (12-byte dirents: nid u64,
// nameoff u16, file_type u8, reserved u8; then the names back to back) of
// size bytes, NUL padded.
func direntBlock(size int, names ...string) []byte {
	b := make([]byte, size)
	off := 12 * len(names)
	for i, n := range names {
		binary.LittleEndian.PutUint64(b[12*i:], uint64(100+i))
		binary.LittleEndian.PutUint16(b[12*i+8:], uint16(off))
		b[12*i+10] = 1
		off += copy(b[off:], n)
	}
	return b
}

func direntNames(t *testing.T, blk []byte) ([]string, error) {
	t.Helper()
	ents, err := parseDirentBlock(blk)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	return names, err
}

func TestDirentBlockEdges(t *testing.T) {
	// A full block: the last name ends at the first NUL of the padding.
	names, err := direntNames(t, direntBlock(BlockSize, "a", "bb"))
	if err != nil || strings.Join(names, ",") != "a,bb" {
		t.Errorf("NUL-padded block: %q, %v", names, err)
	}
	// The last name ends at the block's end, no NUL.
	names, err = direntNames(t, direntBlock(24+3, "a", "bb"))
	if err != nil || strings.Join(names, ",") != "a,bb" {
		t.Errorf("unpadded block: %q, %v", names, err)
	}
	// The last entry's name is only padding: empty, refused.
	blk := direntBlock(24+1+10, "a", "")
	if names, err := direntNames(t, blk); err == nil {
		t.Errorf("an empty last name was accepted: %q", names)
	}
	// EROFS names are at most 255 bytes.
	long := strings.Repeat("n", MaxNameLen)
	if names, err := direntNames(t, direntBlock(12+255, long)); err != nil || len(names) != 1 || names[0] != long {
		t.Errorf("a 255-byte name: %v", err)
	}
	if _, err := direntNames(t, direntBlock(12+256, long+"n")); err == nil {
		t.Error("a 256-byte name was accepted")
	}
}

func TestXattrEdges(t *testing.T) {
	val := func(n int) []byte { return bytes.Repeat([]byte("v"), n) }
	// e_name_len is a u8, e_value_size a u16.
	for _, tc := range []struct {
		x  Xattr
		ok bool
	}{
		{Xattr{"user." + strings.Repeat("k", 255), nil}, true},
		{Xattr{"user." + strings.Repeat("k", 256), nil}, false},
		{Xattr{"user.k", val(65535)}, true},
		{Xattr{"user.k", val(65536)}, false},
	} {
		_, err := XattrAreaSize([]Xattr{tc.x})
		if (err == nil) != tc.ok {
			t.Errorf("xattr %d-byte name, %d-byte value: %v, want ok %v", len(tc.x.Name), len(tc.x.Value), err, tc.ok)
		}
	}
	// An entry is 4 bytes of head, name and value, padded to 4: "user.ab"
	// with a 2-byte value is 8 bytes, so the area is 12+8.
	if n, err := XattrAreaSize([]Xattr{{"user.ab", []byte("vv")}}); n != 20 || err != nil {
		t.Errorf("area of one 8-byte entry: %d, %v; want 20", n, err)
	}
	if n, err := XattrAreaSize([]Xattr{{"user.ab", []byte("v")}}); n != 20 || err != nil {
		t.Errorf("area of one 7-byte entry: %d, %v; want 20", n, err)
	}
	// h_xattr_icount is a u16: (size-12)/4+1 <= 0xffff. Entries of
	// 65532+65532+65536+65536 bytes reach exactly 0xffff.
	xs := []Xattr{{"user.a", val(65527)}, {"user.b", val(65527)}, {"user.c", val(65531)}, {"user.d", val(65531)}}
	n, err := XattrAreaSize(xs)
	if err != nil || XattrICount(n) != 0xffff {
		t.Errorf("area for icount 0xffff: %d bytes, %v", n, err)
	}
	xs[0].Value = val(65528) // one more 4-byte step
	if n, err := XattrAreaSize(xs); err == nil {
		t.Errorf("area for icount 0x10000 accepted: %d bytes", n)
	}

	// Decoding: a bare 12-byte header holds no entries; an entry that
	// exactly fills the area is read; a truncated head or entry is refused.
	if xs, err := UnmarshalXattrs(make([]byte, 12)); err != nil || len(xs) != 0 {
		t.Errorf("bare header: %v, %v", xs, err)
	}
	area := append(make([]byte, 12), 1, 1, 3, 0, 'a', 'b', 'c', 'd') // user.a = "bcd", 8 bytes
	if xs, err := UnmarshalXattrs(area); err != nil || len(xs) != 1 || xs[0].Name != "user.a" || string(xs[0].Value) != "bcd" {
		t.Errorf("exactly filled area: %v, %v", xs, err)
	}
	if _, err := UnmarshalXattrs(append(make([]byte, 12), 1, 1, 0)); err == nil {
		t.Error("a 3-byte entry head was accepted")
	}
	for _, vlen := range []byte{20, 100} {
		if _, err := UnmarshalXattrs(append(make([]byte, 12), 1, 1, vlen, 0, 'a', 'b', 'c', 'd')); err == nil {
			t.Errorf("an entry whose %d-byte value runs past the area was accepted", vlen)
		}
	}
}

// TestInFile: [off, off+n) lies within the file, the end included.
func TestInFile(t *testing.T) {
	rd := &Reader{size: 8192}
	for _, tc := range []struct {
		off, n uint64
		want   bool
	}{
		{8192, 0, true}, {0, 8192, true}, {4096, 4096, true}, {8191, 1, true},
		{4097, 4096, false}, {8193, 0, false}, {8191, 2, false}, {0, 8193, false},
	} {
		if got := rd.inFile(tc.off, tc.n); got != tc.want {
			t.Errorf("inFile(%d, %d) of 8192 = %v", tc.off, tc.n, got)
		}
	}
}

// TestChunkCount: one index per superblock chunk, ceil(size / chunk size).
func TestChunkCount(t *testing.T) {
	rd := &Reader{ChunkSize: 0x1000}
	for size, want := range map[uint64]uint64{0: 0, 1: 1, 0xfff: 1, 0x1000: 1, 0x1001: 2, 0x2000: 2, 0x2fff: 3} {
		if got := rd.ChunkCount(&Node{Inode: Inode{Size: size}}); got != want {
			t.Errorf("ChunkCount of %#x bytes = %d, want %d", size, got, want)
		}
	}
}

// putInode writes an extended (64-byte) inode at nid as §1.8 lays it out.
func putInode(b []byte, nid uint64, format, mode uint16, size uint64, u uint32) {
	o := nid * InodeSlotSize
	le := binary.LittleEndian
	le.PutUint16(b[o:], format|1)
	le.PutUint16(b[o+4:], mode)
	le.PutUint64(b[o+8:], size)
	le.PutUint32(b[o+16:], u)
	le.PutUint32(b[o+44:], 1) // nlink
}

// synthetic is a 4-block bootstrap image with meta_blkaddr 0, one blob of
// four chunks, and inodes placed at the edges of blocks and of the file.
func synthetic(t *testing.T) *Reader {
	b := make([]byte, 4*BlockSize)
	// nid 126: a plain (non-inline) directory whose 64-byte inode ends
	// exactly at the end of block 0, its two dirent blocks in blocks 2-3.
	putInode(b, 126, LayoutFlatPlain<<1, ModeDir|0o755, 2*BlockSize, 2)
	copy(b[2*BlockSize:], direntBlock(BlockSize, ".", "..", "x"))
	copy(b[3*BlockSize:], direntBlock(BlockSize, "y"))
	// nid 200: an inline symlink whose target ends exactly at the end of
	// block 1; its i_u is meaningless for inline-only data.
	target := strings.Repeat("t", 2*BlockSize-(200*32+64))
	putInode(b, 200, LayoutFlatInline<<1, ModeLnk|0o777, uint64(len(target)), 0xffffffff)
	copy(b[200*32+64:], target)
	// nid 128: a plain symlink of MaxSymlinkLen bytes in block 1.
	putInode(b, 128, LayoutFlatPlain<<1, ModeLnk|0o777, MaxSymlinkLen, 1)
	// (block 1 holds that inode too: the target is whatever bytes are there)
	// nid 64: a regular file of three 4 KiB chunks, indexes after the inode.
	putInode(b, 64, LayoutChunkBased<<1, ModeReg|0o644, 3*0x1000-100, 0x20)
	for k := range 3 {
		c := ChunkAddr{BlobIndex: 0, CIIndex: uint32(k + 1), BlkAddr: uint32(10 * k)}
		c.MarshalTo(b[64*32+64+8*k:])
	}
	// nid 80: a regular file whose only chunk names blob 1 of 1.
	putInode(b, 80, LayoutChunkBased<<1, ModeReg|0o644, 10, 0x20)
	(&ChunkAddr{BlobIndex: 1}).MarshalTo(b[80*32+64:])
	// nid 160: a directory with an inline xattr area (user.a = "bcd") and
	// its dirents inline after the xattrs.
	putInode(b, 160, LayoutFlatInline<<1, ModeDir|0o755, 12*3+1+2+1, 0)
	binary.LittleEndian.PutUint16(b[160*32+2:], 3) // i_xattr_icount: 12 + 2*4 bytes
	copy(b[160*32+64+12:], []byte{1, 1, 3, 0, 'a', 'b', 'c', 'd'})
	copy(b[160*32+64+20:], direntBlock(40, ".", "..", "z"))
	// nid 500: a regular file whose 100 chunk indexes would run past the
	// file's end.
	putInode(b, 500, LayoutChunkBased<<1, ModeReg|0o644, 100*0x1000, 0x20)
	// nid 511: a compact (32-byte) fifo inode, the last 32 bytes of the
	// file (in the padding of the directory's last dirent block).
	o := 511 * 32
	binary.LittleEndian.PutUint16(b[o+4:], ModeFifo|0o644)
	binary.LittleEndian.PutUint16(b[o+6:], 1) // i_nlink
	return &Reader{r: bytes.NewReader(b), size: int64(len(b)), bs: BlockSize, ChunkSize: 0x1000,
		Blobs: []BlobEntry{{ChunkCount: 4}}}
}

func TestSyntheticBootstrapEdges(t *testing.T) {
	rd := synthetic(t)
	node := func(nid uint64) *Node {
		t.Helper()
		n, err := rd.Node(nid)
		if err != nil {
			t.Fatalf("inode %d: %v", nid, err)
		}
		return n
	}
	if ents, err := rd.ReadDir(node(126)); err != nil || len(ents) != 4 || ents[2].Name != "x" || ents[3].Name != "y" {
		t.Errorf("two-block plain directory: %+v, %v", ents, err)
	}
	if n := node(160); len(n.Xattrs) != 1 || n.Xattrs[0].Name != "user.a" {
		t.Errorf("xattrs of the directory: %+v", n.Xattrs)
	}
	if ents, err := rd.ReadDir(node(160)); err != nil || len(ents) != 3 || ents[2].Name != "z" {
		t.Errorf("inline dirents after xattrs: %+v, %v", ents, err)
	}
	if s, err := rd.Readlink(node(200)); err != nil || len(s) != 2*BlockSize-(200*32+64) {
		t.Errorf("inline symlink ending at the block end: %d bytes, %v", len(s), err)
	}
	if s, err := rd.Readlink(node(128)); err != nil || len(s) != MaxSymlinkLen {
		t.Errorf("%d-byte symlink: %d bytes, %v", MaxSymlinkLen, len(s), err)
	}
	long := node(128)
	long.Inode.Size++
	if _, err := rd.Readlink(long); err == nil {
		t.Errorf("a %d-byte symlink was accepted", MaxSymlinkLen+1)
	}
	if n := node(511); n.Type() != ModeFifo {
		t.Errorf("last inode of the file: mode %#o", n.Inode.Mode)
	}
	addrs, err := rd.Chunks(node(64))
	if err != nil || len(addrs) != 3 {
		t.Fatalf("chunks: %+v, %v", addrs, err)
	}
	for k, a := range addrs {
		if a.CIIndex != uint32(k+1) || a.BlkAddr != uint32(10*k) || a.BlobIndex != 0 {
			t.Errorf("chunk %d: %+v", k, a)
		}
	}
	if _, err := rd.Chunks(node(500)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("chunk indexes past the end: %v, want ErrCorrupt", err)
	}
	if _, err := rd.Chunks(node(80)); err == nil {
		t.Error("a chunk naming blob 1 of 1 was accepted")
	}
}

// TestTablesEdges: the prefetch table ends at its size or its first 0; the
// chunk table may repeat a record identically, but not differently, and
// names only blobs and chunks that exist.
func TestTablesEdges(t *testing.T) {
	b := make([]byte, BlockSize)
	for i, v := range []uint32{5, 7, 9} {
		binary.LittleEndian.PutUint32(b[1024+4*i:], v)
	}
	rd := &Reader{r: bytes.NewReader(b), size: BlockSize, bs: BlockSize}
	rd.Ext.PrefetchTableOffset, rd.Ext.PrefetchTableSize = 1024, 12
	if got, err := rd.PrefetchTable(); err != nil || len(got) != 3 || got[2] != 9 {
		t.Errorf("prefetch table filling its size: %v, %v", got, err)
	}
	rd.Ext.PrefetchTableSize = 16
	if got, err := rd.PrefetchTable(); err != nil || len(got) != 3 {
		t.Errorf("prefetch table ending with 0: %v, %v", got, err)
	}

	table := func(recs ...ChunkInfo) error {
		b := make([]byte, BlockSize)
		for i := range recs {
			recs[i].MarshalTo(b[i*ChunkTableEntrySize:])
		}
		rd := &Reader{r: bytes.NewReader(b), size: BlockSize, bs: BlockSize,
			Blobs: []BlobEntry{{ChunkCount: 4}}}
		rd.Ext.ChunkTableSize = uint64(len(recs) * ChunkTableEntrySize)
		_, err := rd.tableRecords()
		return err
	}
	rec := ChunkInfo{BlobIndex: 0, Index: 3, CompressedSize: 10, UncompressedSize: 10}
	if err := table(rec, rec); err != nil {
		t.Errorf("a record repeated identically: %v", err)
	}
	other := rec
	other.CompressedOffset = 4096
	if table(rec, other) == nil {
		t.Error("a record repeated differently was accepted")
	}
	past := rec
	past.Index = 4
	if table(past) == nil {
		t.Error("chunk 4 of a 4-chunk blob was accepted")
	}
	blob1 := rec
	blob1.BlobIndex = 1
	if table(blob1) == nil {
		t.Error("blob 1 of 1 was accepted")
	}
}

// TestOpenMetaBlock: meta_blkaddr may name the last block, not one past it.
func TestOpenMetaBlock(t *testing.T) {
	boot, err := os.ReadFile(fixtureBoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		blk uint32
		ok  bool
	}{{uint32(len(boot)/BlockSize - 1), true}, {uint32(len(boot) / BlockSize), false}} {
		b := bytes.Clone(boot)
		sb := UnmarshalSuperBlock(b[SuperBlockOffset:])
		sb.MetaBlkAddr = tc.blk
		sb.MarshalTo(b[SuperBlockOffset:])
		if _, err := Open(bytes.NewReader(b), int64(len(b))); (err == nil) != tc.ok {
			t.Errorf("meta_blkaddr %d of a %d-block bootstrap: %v", tc.blk, len(b)/BlockSize, err)
		}
	}
}

// TestOpenTables: the chunk and prefetch tables must lie in the file; a
// prefetch table is a multiple of 4 bytes.
func TestOpenTables(t *testing.T) {
	boot, err := os.ReadFile(fixtureBoot)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(len(boot))
	for _, tc := range []struct {
		name string
		set  func(*ExtSuperBlock)
		ok   bool
	}{
		{"chunk table past the end", func(e *ExtSuperBlock) { e.ChunkTableOffset = size }, false},
		{"prefetch table in the file", func(e *ExtSuperBlock) { e.PrefetchTableOffset, e.PrefetchTableSize = 16544, 8 }, true},
		{"prefetch table of 6 bytes", func(e *ExtSuperBlock) { e.PrefetchTableOffset, e.PrefetchTableSize = 16544, 6 }, false},
		{"prefetch table past the end", func(e *ExtSuperBlock) { e.PrefetchTableOffset, e.PrefetchTableSize = size, 8 }, false},
	} {
		b := bytes.Clone(boot)
		ext := UnmarshalExtSuperBlock(b[ExtSuperBlockOffset:])
		tc.set(&ext)
		ext.MarshalTo(b[ExtSuperBlockOffset:])
		if _, err := Open(bytes.NewReader(b), int64(len(b))); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

type failingReader struct{ err error }

func (f failingReader) ReadAt([]byte, int64) (int, error) { return 0, f.err }

// TestIOErrorIsNotCorruption: a read that fails is reported as that
// failure, not as a corrupt image.
func TestIOErrorIsNotCorruption(t *testing.T) {
	ioErr := errors.New("device error")
	rd := &Reader{r: failingReader{ioErr}, size: 4 * BlockSize, bs: BlockSize}
	_, err := rd.Node(3)
	if !errors.Is(err, ioErr) || errors.Is(err, ErrCorrupt) {
		t.Errorf("failing read: %v", err)
	}
}

// TestDecompressBounds: sizes run from 0 to twice the largest chunk, and
// dst is reused when its capacity suffices.
func TestDecompressBounds(t *testing.T) {
	for _, size := range []int{0, MaxChunkSize + 1, 2 * MaxChunkSize} {
		if _, err := CompressNone.Decompress(nil, make([]byte, size), size); err != nil {
			t.Errorf("%d raw bytes: %v", size, err)
		}
	}
	for _, size := range []int{-1, 2*MaxChunkSize + 1} {
		if _, err := CompressNone.Decompress(nil, make([]byte, max(size, 0)), size); err == nil {
			t.Errorf("size %d accepted", size)
		}
	}
	data := bytes.Repeat([]byte("0123456789"), 1000)
	comp, _, err := CompressZstd.Compress(nil, data)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, len(data))
	out, err := CompressZstd.Decompress(dst, comp, len(data))
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("zstd: %v", err)
	}
	if &out[0] != &dst[:1][0] {
		t.Error("zstd did not decompress into a dst of exactly the size")
	}
}

// TestDigesterSuperFlag: RAFS_SUPER_FLAGS_HASH_BLAKE3 0x4, HASH_SHA256 0x8.
func TestDigesterSuperFlag(t *testing.T) {
	if DigestBlake3.SuperFlag() != 0x4 || DigestSha256.SuperFlag() != 0x8 {
		t.Errorf("blake3 %#x, sha256 %#x", uint64(DigestBlake3.SuperFlag()), uint64(DigestSha256.SuperFlag()))
	}
}

// rawBlob lays out a blob as §2.3 and §2.4 describe: chunk data, an
// optional 512-byte tar header, the raw v1 chunk-info array, the 4096-byte
// header last.
func rawBlob(chunks []BlobChunk, dataSize int, tarHeader bool) ([]byte, BlobEntry) {
	b := make([]byte, dataSize)
	e := BlobEntry{BlobID: "raw", ChunkSize: 0x1000, ChunkCount: uint32(len(chunks)), Compressor: CompressZstd,
		Features: BlobAligned, UncompressedSize: 1 << 30, MetaCompressor: CompressNone}
	if tarHeader {
		b = append(b, make([]byte, TarHeaderSize)...)
		e.Features |= BlobHasTarHeader
	}
	e.MetaOffset = uint64(len(b))
	for _, c := range chunks {
		b = append(b, specChunkInfoV1(c)...)
	}
	e.MetaSize = uint64(len(chunks) * ChunkInfoV1Size)
	e.MetaCompressedSize = e.MetaSize
	h := BlobMetaHeader{Features: e.Features, CICompressor: CompressNone, CIEntries: e.ChunkCount,
		CIOffset: e.MetaOffset, CICompressedSize: e.MetaCompressedSize, CISize: e.MetaSize}
	b = append(b, specBlobMetaHeader(h)...)
	e.CompressedSize = uint64(len(b))
	return b, e
}

func TestChunkInfoEdges(t *testing.T) {
	load := func(b []byte, e BlobEntry) error {
		_, err := LoadChunkInfo(bytes.NewReader(b), int64(len(b)), e)
		return err
	}
	// The header ending exactly at the blob's end; the last chunk ending
	// exactly where the chunk info starts (no tar header).
	chunks := []BlobChunk{{0, 100, 0, 4096}, {100, 4000, 4096, 4096}}
	b, e := rawBlob(chunks, 4100, false)
	if err := load(b, e); err != nil {
		t.Errorf("chunks up to the chunk info: %v", err)
	}
	// With a tar header the chunk area ends 512 bytes earlier.
	b, e = rawBlob(chunks, 4100-256, true)
	if err := load(b, e); err == nil {
		t.Error("a chunk overlapping the tar header was accepted")
	}
	b, e = rawBlob(chunks, 4100, true)
	if err := load(b, e); err != nil {
		t.Errorf("chunks up to the tar header: %v", err)
	}
	// Chunk info claimed past the blob's end is corrupt.
	b, e = rawBlob(chunks, 4100, false)
	e.MetaOffset += 100
	if err := load(b, e); !errors.Is(err, ErrCorrupt) {
		t.Errorf("chunk info past the blob: %v, want ErrCorrupt", err)
	}
	// Chunk info v2 is refused, unless the blob has no chunks to describe.
	b, e = rawBlob(chunks, 4100, false)
	e.Features |= BlobChunkInfoV2
	if err := load(b, e); err == nil {
		t.Error("a chunk-info v2 blob was read as v1")
	}
	b, e = rawBlob(nil, 0, false)
	e.Features |= BlobChunkInfoV2
	if err := load(b, e); err != nil {
		t.Errorf("a v2 blob without chunks: %v", err)
	}
}

// TOC edges: the TOC may be 64 KiB and may fill the blob; a section may be
// exactly the size limit given.
func TestTOCEdges(t *testing.T) {
	toc := func(entries int) []byte {
		b := make([]byte, entries*TOCEntrySize)
		for i := range entries {
			copy(b[i*TOCEntrySize+8:], "x")
			binary.LittleEndian.PutUint32(b[i*TOCEntrySize:], 1)
		}
		return append(b, TarHeader(TOCName, uint64(len(b)))...)
	}
	b := toc(MaxTOCSize / TOCEntrySize)
	if got, _, err := ReadTOC(bytes.NewReader(b), int64(len(b)), 0); err != nil || len(got) != MaxTOCSize/TOCEntrySize {
		t.Errorf("a 64 KiB TOC filling the blob: %d entries, %v", len(got), err)
	}
	b = toc(MaxTOCSize/TOCEntrySize + 1)
	if _, _, err := ReadTOC(bytes.NewReader(b), int64(len(b)), 0); err == nil {
		t.Error("a TOC over 64 KiB was accepted")
	}
	b = toc(2) // its header claims one entry more than the blob holds
	copy(b[len(b)-TarHeaderSize:], TarHeader(TOCName, 3*TOCEntrySize))
	if _, _, err := ReadTOC(bytes.NewReader(b), int64(len(b)), 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a TOC larger than its blob: %v, want ErrCorrupt", err)
	}

	data := bytes.Repeat([]byte("s"), 1000)
	e := TOCEntry{Flags: 1, Name: "blob.digest", CompressedSize: 1000, UncompressedSize: 1000}
	e.Digest = sha256.Sum256(data)
	if got, err := ReadTOCData(bytes.NewReader(data), e, 1000); err != nil || !bytes.Equal(got, data) {
		t.Errorf("a section of exactly the limit: %v", err)
	}
	if _, err := ReadTOCData(bytes.NewReader(data), e, 999); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a section over the limit: %v", err)
	}
}
