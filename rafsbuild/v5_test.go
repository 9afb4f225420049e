package rafsbuild_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestBuildV5Mounts builds the fstree sample (every file type, hardlinks,
// xattrs, sparse files, long names) as RAFS v5 and mounts it over FUSE: the
// mounted tree equals the source, every inode digest of the Merkle tree
// verifies, every chunk matches, and a second build is byte-identical.
func TestBuildV5Mounts(t *testing.T) {
	testenv.RequireFUSE(t)
	src := sourceTree(t)
	opts := rafsbuild.Options{FsVersion: 5, Compressor: rafs.CompressZstd, ChunkSize: 0x10000}
	out, res := build(t, src, opts)
	if res.FsVersion != "5" {
		t.Fatalf("fs version %q", res.FsVersion)
	}
	img := openImage(t, out)
	rd := img.Boot
	if rd.Version() != 5 {
		t.Fatalf("built a v%d bootstrap", rd.Version())
	}
	m, err := rd.VerifyMerkle()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Mismatches) != 0 || m.Root != m.ComputedRoot {
		t.Fatalf("Merkle: %d mismatches, the first %+v", len(m.Mismatches), m.Mismatches[0])
	}
	if _, err := img.RAFS.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: out}
	cfg.CacheDir = t.TempDir()
	cfg.Xattrs = true
	mnt := mounttest.FUSE(t, imagemount.Options{Bootstrap: filepath.Join(out, "image.meta"), Config: cfg})
	requireSame(t, src, mnt.Dir())

	again, _ := build(t, src, opts)
	for _, name := range append([]string{"image.meta"}, res.Blobs...) {
		a, errA := os.ReadFile(filepath.Join(out, name))
		b, errB := os.ReadFile(filepath.Join(again, name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds (%v, %v)", name, errA, errB)
		}
	}
}

// v5Record is one decoded record of a v5 bootstrap, decoded here straight
// from the bytes (docs/rafs-format.md §4) rather than through rafs.Reader.
type v5Record struct {
	rafs.V5Inode
	target string
	chunks []rafs.ChunkInfo
}

// decodeV5 returns the records of a v5 bootstrap by path.
func decodeV5(t *testing.T, b []byte) (rafs.V5SuperBlock, map[string]v5Record) {
	t.Helper()
	sb := rafs.UnmarshalV5SuperBlock(b)
	type raw struct {
		rec  v5Record
		name string
	}
	recs := make([]raw, sb.InodeTableEntries+1)
	for i := uint32(1); i <= sb.InodeTableEntries; i++ {
		off := uint64(binary.LittleEndian.Uint32(b[sb.InodeTableOffset+uint64(i-1)*4:])) << 3
		ino := rafs.UnmarshalV5Inode(b[off:])
		pos := off + rafs.V5InodeSize
		name := string(b[pos : pos+uint64(ino.NameSize)])
		pos += rafs.V5Align8(uint64(ino.NameSize))
		r := v5Record{V5Inode: ino, target: string(b[pos : pos+uint64(ino.SymlinkSize)])}
		pos += rafs.V5Align8(uint64(ino.SymlinkSize))
		if ino.Flags&rafs.V5InodeXattr != 0 {
			pos += 8 + rafs.V5Align8(binary.LittleEndian.Uint64(b[pos:]))
		}
		if ino.Mode&rafs.ModeFmt == rafs.ModeReg {
			for k := range ino.ChildCount {
				r.chunks = append(r.chunks, rafs.UnmarshalChunkInfo(b[pos+uint64(k)*rafs.ChunkTableEntrySize:]))
			}
		}
		recs[i] = raw{r, name}
	}
	paths := map[string]v5Record{"/": recs[1].rec}
	var walk func(i uint32, p string)
	walk = func(i uint32, p string) {
		d := recs[i].rec
		if d.Mode&rafs.ModeFmt != rafs.ModeDir {
			return
		}
		for c := d.ChildIndex; c < d.ChildIndex+d.ChildCount; c++ {
			cp := path.Join(p, recs[c].name)
			paths[cp] = recs[c].rec
			walk(c, cp)
		}
	}
	walk(1, "/")
	return sb, paths
}

// TestBuildV5MatchesUpstream rebuilds upstream's v5 fixture tree (unpacked
// from the fixture) with the fixture's options (sha256, no compression,
// 1 MiB chunks) and compares our bootstrap with upstream's bytes, record by
// record: every digest (so the root digest too), parent, inode number,
// mode, size, blocks, flags, nlink, child range, name, target, rdev, mtime,
// and every chunk record's digest, size, chunk index and file offset. What
// may differ is listed in docs/rafs-format.md §4: record order and offsets,
// chunk locations in the blob, chunk flags and CRCs, blob features, the
// EXPLICIT_UID_GID flag and the 2020 builder's inode count.
func TestBuildV5MatchesUpstream(t *testing.T) {
	const fixture = "../testdata/nydus/repeatable/sha256-nocompress-repeatable"
	const blobID = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00"
	z, err := os.ReadFile("../testdata/nydus/repeatable/" + blobID + ".zst")
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	blob, err := dec.DecodeAll(z, nil)
	dec.Close()
	if err != nil {
		t.Fatal(err)
	}
	blobs := t.TempDir()
	if err := os.WriteFile(filepath.Join(blobs, blobID), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := extract.Open(fixture, blobs)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	src := filepath.Join(t.TempDir(), "src")
	if err := img.Tree(context.Background(), src, extract.TreeOptions{Owner: os.Geteuid() == 0}); err != nil {
		t.Fatal(err)
	}
	out, _ := build(t, src, rafsbuild.Options{FsVersion: 5, Digester: rafs.DigestSha256, Compressor: rafs.CompressNone})
	ours, err := os.ReadFile(filepath.Join(out, "image.meta"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	osb, orecs := decodeV5(t, ours)
	tsb, trecs := decodeV5(t, theirs)
	if osb.InodeTableEntries != tsb.InodeTableEntries || osb.BlockSize != tsb.BlockSize ||
		osb.Flags&^rafs.FlagExplicitUIDGID != tsb.Flags || osb.PrefetchTableEntries != 0 || osb.ExtBlobTableEntries != 1 {
		t.Errorf("superblock %+v, upstream %+v", osb, tsb)
	}
	if len(orecs) != len(trecs) || len(trecs) != 54 {
		t.Fatalf("%d paths, upstream %d", len(orecs), len(trecs))
	}
	for p, want := range trecs {
		got, ok := orecs[p]
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		gi, wi := got.V5Inode, want.V5Inode
		if gi.Mode&rafs.ModeFmt != rafs.ModeDir {
			gi.ChildIndex, wi.ChildIndex = 0, 0 // meaningless off directories
		}
		if gi != wi || got.target != want.target || len(got.chunks) != len(want.chunks) {
			t.Errorf("%s:\n  ours     %+v %q\n  upstream %+v %q", p, gi, got.target, wi, want.target)
			continue
		}
		for k, c := range want.chunks {
			g := got.chunks[k]
			if g.Digest != c.Digest || g.UncompressedSize != c.UncompressedSize || g.Index != c.Index ||
				g.FileOffset != c.FileOffset || g.BlobIndex != c.BlobIndex {
				t.Errorf("%s chunk %d: ours %+v, upstream %+v", p, k, g, c)
			}
		}
	}
}
