// Package inspect describes a RAFS image (v6, or v5) for humans and for CI:
// the superblocks, the blob table with its device slots, every path of the
// tree with its inode and chunk indexes, a v5 bootstrap's root digest and,
// on request, its recomputed Merkle tree (rafs.Reader.VerifyMerkle), and,
// when the blobs are at hand, the result of verifying the image against its
// bootstrap (rafs.Image.Verify).
package inspect

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/nydus-go/nydusify/rafs"
)

// Report is the description of one image; it marshals to JSON as is.
type Report struct {
	Version     int      `json:"rafs_version"`
	Inodes      uint64   `json:"inodes"`
	Blocks      uint32   `json:"blocks"`
	MetaBlkAddr uint32   `json:"meta_blkaddr"`
	Flags       []string `json:"flags"`
	ChunkSize   uint32   `json:"chunk_size"`
	ChunkTable  int      `json:"chunk_table_entries"`
	Blobs       []Blob   `json:"blobs"`
	// RootDigest is a v5 bootstrap's stored root digest (hex): the top of
	// its Merkle tree, which pins the content of every file and symlink
	// and the shape of the tree, though not names or attributes.
	RootDigest string `json:"root_digest,omitempty"`
	// Merkle is set when the Merkle tree was recomputed.
	Merkle  *Merkle `json:"merkle,omitempty"`
	Entries []Entry `json:"entries"`
}

// Merkle is the result of recomputing a v5 Merkle tree.
type Merkle struct {
	Digester     string `json:"digester"`
	Inodes       int    `json:"inodes"`
	ComputedRoot string `json:"computed_root_digest"`
	// Mismatches lists every inode whose stored digest differs from the
	// recomputed one: a changed leaf and each directory above it.
	Mismatches []Mismatch `json:"mismatches"`
}

// Mismatch is one inode whose digest does not verify.
type Mismatch struct {
	Path     string `json:"path"`
	Index    uint32 `json:"inode_index"`
	Stored   string `json:"stored"`
	Computed string `json:"computed"`
}

// Options select what Describe checks beyond decoding the bootstrap.
type Options struct {
	// Blobs verifies every chunk as rafs.Image.Verify does; the image
	// must have been given its blobs.
	Blobs bool
	// Merkle recomputes a v5 bootstrap's Merkle tree; for v6 it is an
	// error, as v6 inodes carry no digests.
	Merkle bool
}

// Blob describes one blob-table entry and its device slot.
type Blob struct {
	Index            int      `json:"index"`
	ID               string   `json:"blob_id"`
	Compressor       string   `json:"compressor"`
	Digester         string   `json:"digester"`
	Features         []string `json:"features"`
	ChunkCount       uint32   `json:"chunk_count"`
	CompressedSize   uint64   `json:"compressed_size"`
	UncompressedSize uint64   `json:"uncompressed_size"`
	MetaOffset       uint64   `json:"chunk_info_offset"`
	TOCSize          uint32   `json:"toc_size"`
	DeviceBlocks     uint32   `json:"device_blocks"`
	MappedBlkAddr    uint32   `json:"mapped_blkaddr"`
	// VerifiedChunks is set when the image was verified: how many chunks
	// of the blob the bootstrap's chunk table records, each of which was
	// read, decompressed and matched the table's digest.
	VerifiedChunks *uint32 `json:"verified_chunks,omitempty"`
}

// Entry describes one path.
type Entry struct {
	Path   string            `json:"path"`
	Nid    uint64            `json:"nid"`
	Ino    uint32            `json:"ino"`
	Type   string            `json:"type"`
	Mode   string            `json:"mode"`
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Size   uint64            `json:"size"`
	Nlink  uint32            `json:"nlink"`
	Mtime  string            `json:"mtime"`
	Rdev   string            `json:"rdev,omitempty"`
	Target string            `json:"target,omitempty"`
	Xattrs map[string]string `json:"xattrs,omitempty"`
	Chunks []Chunk           `json:"chunks,omitempty"`
}

// Chunk is one chunk index of a regular file.
type Chunk struct {
	Blob    uint8  `json:"blob"`
	CIIndex uint32 `json:"ci_index"`
	BlkAddr uint32 `json:"blkaddr"`
}

// Describe builds the report of img. With opts.Blobs, the image is checked
// as rafs.Image.Verify does (every file's chunk indexes against the
// bootstrap's chunk table, every chunk read and matched against the table's
// digest), and a failure, naming the file it reaches, is returned as an
// error. With opts.Merkle, the report holds every Merkle mismatch; Failed
// tells whether there was one.
func Describe(ctx context.Context, img *rafs.Image, opts Options) (*Report, error) {
	rd := img.Bootstrap()
	var verified []int
	if opts.Blobs {
		var err error
		if verified, err = img.Verify(ctx); err != nil {
			return nil, fmt.Errorf("verifying the image: %w", err)
		}
	}
	r := &Report{
		Version: rd.Version(), Inodes: rd.Super.Inos, Blocks: rd.Super.Blocks, MetaBlkAddr: rd.Super.MetaBlkAddr,
		Flags: flagNames(rd.Ext.Flags, superFlagTable), ChunkSize: rd.ChunkSize,
		ChunkTable: int(rd.Ext.ChunkTableSize / rafs.ChunkTableEntrySize),
		Blobs:      []Blob{}, Entries: []Entry{},
	}
	if d, ok := rd.RootDigest(); ok {
		r.RootDigest = hex.EncodeToString(d[:])
	}
	if opts.Merkle {
		m, err := rd.VerifyMerkle()
		if err != nil {
			return nil, err
		}
		r.Merkle = &Merkle{Digester: m.Digester.String(), Inodes: m.Inodes,
			ComputedRoot: hex.EncodeToString(m.ComputedRoot[:]), Mismatches: []Mismatch{}}
		for _, x := range m.Mismatches {
			r.Merkle.Mismatches = append(r.Merkle.Mismatches, Mismatch{Path: x.Path, Index: x.Index,
				Stored: hex.EncodeToString(x.Stored[:]), Computed: hex.EncodeToString(x.Computed[:])})
		}
	}
	for i, b := range rd.Blobs {
		var d rafs.DeviceSlot // v5 has no device slots
		if i < len(rd.Devices) {
			d = rd.Devices[i]
		}
		bl := Blob{
			Index: i, ID: b.BlobID, Compressor: b.Compressor.String(), Digester: b.Digester.String(),
			Features: flagNames(b.Features, blobFeatureTable), ChunkCount: b.ChunkCount,
			CompressedSize: b.CompressedSize, UncompressedSize: b.UncompressedSize,
			MetaOffset: b.MetaOffset, TOCSize: b.TOCSize, DeviceBlocks: d.Blocks, MappedBlkAddr: d.MappedBlkAddr,
		}
		if verified != nil {
			n := uint32(verified[i])
			bl.VerifiedChunks = &n
		}
		r.Blobs = append(r.Blobs, bl)
	}
	err := rd.Walk(func(p string, n *rafs.Node) error {
		ino := n.Inode
		e := Entry{
			Path: p, Nid: n.Nid, Ino: ino.Ino, Type: typeName(n.Type()), Mode: fmt.Sprintf("%04o", ino.Mode&0o7777),
			UID: ino.UID, GID: ino.GID, Size: ino.Size, Nlink: ino.Nlink,
			Mtime: fmt.Sprintf("%d.%09d", ino.Mtime, ino.MtimeNsec),
		}
		switch n.Type() {
		case rafs.ModeChr, rafs.ModeBlk:
			major, minor := rafs.DecodeRdev(ino.U)
			e.Rdev = fmt.Sprintf("%d:%d", major, minor)
		case rafs.ModeLnk:
			t, err := rd.Readlink(n)
			if err != nil {
				return err
			}
			e.Target = t
		case rafs.ModeReg:
			addrs, err := rd.Chunks(n)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				e.Chunks = append(e.Chunks, Chunk{a.BlobIndex, a.CIIndex, a.BlkAddr})
			}
		}
		if len(n.Xattrs) > 0 {
			e.Xattrs = map[string]string{}
			for _, x := range n.Xattrs {
				e.Xattrs[x.Name] = fmt.Sprintf("%q", x.Value)
			}
		}
		r.Entries = append(r.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// WriteText renders the report for a terminal; chunks lists every chunk index.
func (r *Report) WriteText(w io.Writer, chunks bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "RAFS v%d bootstrap: %d inodes, chunk size %#x, %d blob(s), %d chunk table entries\n",
		r.Version, r.Inodes, r.ChunkSize, len(r.Blobs), r.ChunkTable)
	fmt.Fprintf(&b, "flags: %s\n", strings.Join(r.Flags, " "))
	if r.RootDigest != "" {
		fmt.Fprintf(&b, "root digest: %s\n", r.RootDigest)
	}
	if m := r.Merkle; m != nil {
		fmt.Fprintf(&b, "merkle tree: %d inodes recomputed with %s, root %s: ", m.Inodes, m.Digester, m.ComputedRoot)
		if len(m.Mismatches) == 0 {
			b.WriteString("every digest verifies\n")
		} else {
			fmt.Fprintf(&b, "%d MISMATCH(ES)\n", len(m.Mismatches))
		}
		for _, x := range m.Mismatches {
			fmt.Fprintf(&b, "  mismatch %s (inode %d): stored %s, computed %s\n", x.Path, x.Index, x.Stored, x.Computed)
		}
	}
	for _, bl := range r.Blobs {
		dev := "" // v5 has no devices
		if r.Version == 6 {
			dev = fmt.Sprintf(", device blocks %d at %d", bl.DeviceBlocks, bl.MappedBlkAddr)
		}
		fmt.Fprintf(&b, "blob %d %s\n  %s/%s, %d chunks, %d bytes stored, %d uncompressed%s\n  features: %s\n",
			bl.Index, bl.ID, bl.Compressor, bl.Digester, bl.ChunkCount, bl.CompressedSize, bl.UncompressedSize,
			dev, strings.Join(bl.Features, " "))
		if bl.VerifiedChunks != nil {
			fmt.Fprintf(&b, "  verified: %d chunks read and matched their digests\n", *bl.VerifiedChunks)
		}
	}
	for _, e := range r.Entries {
		extra := ""
		switch {
		case e.Target != "":
			extra = " -> " + e.Target
		case e.Rdev != "":
			extra = " dev " + e.Rdev
		}
		fmt.Fprintf(&b, "%-7s %s %5d:%-5d %12d nlink %-3d nid %-8d %s%s\n", e.Type, e.Mode, e.UID, e.GID, e.Size, e.Nlink, e.Nid, e.Path, extra)
		keys := make([]string, 0, len(e.Xattrs))
		for k := range e.Xattrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "        xattr %s=%s\n", k, e.Xattrs[k])
		}
		if chunks {
			for i, c := range e.Chunks {
				fmt.Fprintf(&b, "        chunk %d: blob %d ci %d blkaddr %d\n", i, c.Blob, c.CIIndex, c.BlkAddr)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func typeName(t uint32) string {
	switch t {
	case rafs.ModeReg:
		return "file"
	case rafs.ModeDir:
		return "dir"
	case rafs.ModeLnk:
		return "symlink"
	case rafs.ModeChr:
		return "chardev"
	case rafs.ModeBlk:
		return "blockdev"
	case rafs.ModeFifo:
		return "fifo"
	case rafs.ModeSock:
		return "socket"
	}
	return "unknown"
}

// flagName names one bit of a flag word.
type flagName[T ~uint32 | ~uint64] struct {
	bit  T
	name string
}

// flagNames lists the names of the bits set in v, in table order.
func flagNames[T ~uint32 | ~uint64](v T, table []flagName[T]) []string {
	out := []string{}
	for _, f := range table {
		if v&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

var superFlagTable = []flagName[rafs.SuperFlags]{
	{rafs.FlagCompressionNone, "COMPRESSION_NONE"}, {rafs.FlagCompressionLZ4, "COMPRESSION_LZ4"},
	{rafs.FlagHashBlake3, "HASH_BLAKE3"}, {rafs.FlagHashSha256, "HASH_SHA256"},
	{rafs.FlagExplicitUIDGID, "EXPLICIT_UID_GID"}, {rafs.FlagHasXattr, "HAS_XATTR"},
	{rafs.FlagCompressionGzip, "COMPRESSION_GZIP"}, {rafs.FlagCompressionZstd, "COMPRESSION_ZSTD"},
	{rafs.FlagInlinedChunkDigest, "INLINED_CHUNK_DIGEST"}, {rafs.FlagTarfsMode, "TARFS_MODE"},
	{rafs.FlagEncryptionNone, "ENCRYPTION_NONE"}, {rafs.FlagEncryptionAES, "ENCRYPTION_ASE_128_XTS"},
}

var blobFeatureTable = []flagName[rafs.BlobFeatures]{
	{rafs.BlobAligned, "ALIGNED"}, {rafs.BlobInlinedFsMeta, "INLINED_FS_META"},
	{rafs.BlobChunkInfoV2, "CHUNK_INFO_V2"}, {rafs.BlobZran, "ZRAN"}, {rafs.BlobSeparate, "SEPARATE"},
	{rafs.BlobInlinedChunkDigest, "INLINED_CHUNK_DIGEST"}, {rafs.BlobTarfs, "TARFS"}, {rafs.BlobBatch, "BATCH"},
	{rafs.BlobEncrypted, "ENCRYPTED"}, {rafs.BlobIsChunkdictGenerated, "IS_CHUNKDICT_GENERATED"},
	{rafs.BlobSeparatedPrefetch, "IS_SEPARATED_WITH_PREFETCH_FILES"}, {rafs.BlobExternal, "EXTERNAL"},
	{rafs.BlobHasTarHeader, "HAS_TAR_HEADER"}, {rafs.BlobHasTOC, "HAS_TOC"}, {rafs.BlobCapTarTOC, "CAP_TAR_TOC"},
}

// Failed reports whether a recomputed Merkle tree found a mismatch.
func (r *Report) Failed() bool { return r.Merkle != nil && len(r.Merkle.Mismatches) > 0 }
