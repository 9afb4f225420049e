package rafsbuild

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nydus-go/nydusify/rafs"
)

// Restoring a layer from its blob (docs/rafs-format.md §5.4). A layer blob
// carries its own bootstrap (§2.1), which records the layer's tree and its
// chunks, so a layer converted earlier can join a Merge without its source
// tar. Two things Merge relies on are not in the bootstrap, and travel
// beside the blob as LayerHints: which directories the tar described (a
// directory the builder implied, as a missing parent or a root without an
// entry, looks exactly like a described one of mode 0755, owner 0, mtime
// 0), and the directories the layer's own symlink resolution assumed are
// no symlinks below (resolve.go).

// LayerHints is what a layer's bootstrap does not record but Merge needs,
// as Layer.Hints returns it. Both lists are empty for most layers.
type LayerHints struct {
	// Described lists the directories (tree paths, "" for the root) that
	// the layer's tar described with exactly the metadata of an implied
	// directory; every other directory of that look is taken as implied.
	Described []string `json:"described,omitempty"`
	// Assumed is the layer's assumed-directory list (resolve.go).
	Assumed []string `json:"assumed,omitempty"`
}

// isImpliedLook reports whether e has the metadata the builder gives a
// directory no tar entry describes.
func isImpliedLook(e *Entry) bool {
	return e.Mode == rafs.ModeDir|0o755 && e.UID == 0 && e.GID == 0 && e.Mtime == 0 && e.MtimeNsec == 0 && len(e.Xattrs) == 0
}

// Hints returns what RestoreLayer needs besides the blob to restore l
// exactly. Call it before Merge, which consumes the layer's tree.
func (l *Layer) Hints() LayerHints {
	var h LayerHints
	l.tree.walkBFS(func(n *node) {
		if n.isDir() && !n.synthetic && isImpliedLook(&n.entry) {
			h.Described = append(h.Described, n.entry.Path)
		}
	})
	h.Assumed = slices.Clone(l.tree.assumedDirs)
	return h
}

// maxRestoreMeta bounds the bootstrap and chunk info read from a layer blob
// on top of the blob's own size.
const maxRestoreMeta = 1 << 32

// RestoreLayer reads back a layer that BuildLayer wrote without a chunk
// dictionary, from its blob r of size bytes, whose sha256 (hex) is digest,
// and the hints Layer.Hints gave for it. Only the blob's tail is read: the
// TOC, the inline bootstrap and the chunk info, so r may be a ranged reader
// of a remote blob. The blob's whole digest is not checked (that would
// read it all): the caller vouches that r is the blob named digest, as a
// registry serving it by digest does. The bootstrap is validated like any
// untrusted one, and it must have been built with opts' compressor,
// digester and chunk size. The layer's Stats hold its entry and blob chunk
// counts only.
func RestoreLayer(r io.ReaderAt, size int64, digest string, hints LayerHints, opts Options) (*Layer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	toc, tocDigest, err := rafs.ReadTOC(r, size, 0)
	if err != nil {
		return nil, err
	}
	sections := map[string][]byte{}
	for _, e := range toc {
		switch e.Name {
		case rafs.TOCImageBoot, rafs.TOCBlobMeta, rafs.TOCBlobMetaHeader:
		default:
			continue
		}
		if _, dup := sections[e.Name]; dup {
			return nil, fmt.Errorf("%w: the blob's TOC lists %s twice", rafs.ErrCorrupt, e.Name)
		}
		if e.CompressedSize > uint64(size) {
			return nil, fmt.Errorf("%w: TOC section %s of %d bytes in a blob of %d", rafs.ErrCorrupt, e.Name, e.CompressedSize, size)
		}
		if sections[e.Name], err = rafs.ReadTOCData(r, e, maxRestoreMeta); err != nil {
			return nil, err
		}
	}
	boot := sections[rafs.TOCImageBoot]
	if boot == nil {
		return nil, fmt.Errorf("the blob carries no bootstrap (no %s in its TOC): not a layer blob", rafs.TOCImageBoot)
	}
	rd, err := rafs.Open(bytes.NewReader(boot), int64(len(boot)))
	if err != nil {
		return nil, fmt.Errorf("layer bootstrap: %w", err)
	}
	if want := opts.Compressor.SuperFlag() | opts.Digester.SuperFlag(); rd.Ext.Flags&want != want || rd.ChunkSize != opts.ChunkSize {
		return nil, fmt.Errorf("the layer was built with other options (flags %#x, chunk size %#x) than %v, %v, chunk size %#x",
			uint64(rd.Ext.Flags), rd.ChunkSize, opts.Compressor, opts.Digester, opts.ChunkSize)
	}
	l := &Layer{Digest: digest, Size: size}
	var bw *blobWriter
	switch len(rd.Blobs) {
	case 0:
	case 1:
		e := rd.Blobs[0]
		if e.BlobID != inlineBlobID || e.Compressor != opts.Compressor || e.Digester != opts.Digester {
			return nil, fmt.Errorf("%w: the layer bootstrap's blob entry (id %s, %v, %v) is not its own blob's",
				rafs.ErrCorrupt, e.BlobID, e.Compressor, e.Digester)
		}
		meta, header := sections[rafs.TOCBlobMeta], sections[rafs.TOCBlobMetaHeader]
		if meta == nil || header == nil {
			return nil, fmt.Errorf("%w: the blob's TOC has no chunk info", rafs.ErrCorrupt)
		}
		l.BlobMeta = append(append(meta, make([]byte, rafs.AlignUp(uint64(len(meta)), rafs.BlockSize)-uint64(len(meta)))...), header...)
		// The entry as the finished blob has it (finishTOC): the inline
		// bootstrap was written before the TOC closed the blob.
		e.CompressedSize = uint64(size)
		e.TOCSize = uint32(len(toc)*rafs.TOCEntrySize + rafs.TarHeaderSize)
		e.TOCDigest = tocDigest
		bw = &blobWriter{final: &blobResult{entry: e, digest: digest}}
		l.Stats.BlobChunks = e.ChunkCount
	default:
		return nil, fmt.Errorf("the layer bootstrap references %d blobs: a layer built with cross-layer dedup cannot be restored alone", len(rd.Blobs))
	}
	if l.tree, err = restoreTree(rd, bw, hints); err != nil {
		return nil, fmt.Errorf("layer bootstrap: %w", err)
	}
	l.tree.walkBFS(func(*node) { l.Stats.Entries++ })
	return l, nil
}

// restoreTree rebuilds a layer tree from its bootstrap; bw stands for the
// layer's blob, nil when the bootstrap has no blob.
func restoreTree(rd *rafs.Reader, bw *blobWriter, hints LayerHints) (*tree, error) {
	var chunks map[uint32]*chunkRec
	if bw != nil {
		table, err := rd.ChunkTable()
		if err != nil {
			return nil, err
		}
		chunks = make(map[uint32]*chunkRec, len(table))
		for _, c := range table {
			if c.BlobIndex != 0 || c.Index >= rd.Blobs[0].ChunkCount {
				return nil, fmt.Errorf("%w: chunk table names chunk %d of blob %d", rafs.ErrCorrupt, c.Index, c.BlobIndex)
			}
			chunks[c.Index] = &chunkRec{
				blob: bw, digest: c.Digest, crc: c.CRC32, ciIndex: c.Index,
				coff: c.CompressedOffset, csize: c.CompressedSize, uoff: c.UncompressedOffset, usize: c.UncompressedSize,
				compressed: c.Flags&rafs.ChunkCompressed != 0,
			}
		}
	}
	described := map[string]bool{}
	for _, p := range hints.Described {
		described[p] = true
	}
	t := newTree()
	t.assumedDirs = slices.Clone(hints.Assumed)
	files := map[uint64]*fileData{} // by nid: hardlinked paths share one inode
	seen := map[string]bool{}
	err := rd.Walk(func(p string, n *rafs.Node) error {
		e := Entry{
			Path: strings.TrimPrefix(p, "/"), Mode: uint32(n.Inode.Mode), UID: n.Inode.UID, GID: n.Inode.GID,
			Mtime: int64(n.Inode.Mtime), MtimeNsec: n.Inode.MtimeNsec, Xattrs: n.Xattrs,
		}
		slices.SortFunc(e.Xattrs, func(a, b rafs.Xattr) int { return strings.Compare(a.Name, b.Name) })
		if p != "/" && e.Path == "" || strings.HasSuffix(e.Path, "/") {
			return fmt.Errorf("%w: empty name at %q", rafs.ErrCorrupt, p)
		}
		switch e.Mode & rafs.ModeFmt {
		case rafs.ModeReg:
			e.Size = n.Inode.Size
		case rafs.ModeLnk:
			target, err := rd.Readlink(n)
			if err != nil {
				return err
			}
			e.Target = target
		case rafs.ModeChr, rafs.ModeBlk:
			e.Rdev = n.Inode.U
		}
		if p == "/" && !n.IsDir() {
			return fmt.Errorf("%w: the root is not a directory", rafs.ErrCorrupt)
		}
		if seen[p] {
			return fmt.Errorf("%w: %s appears twice", rafs.ErrCorrupt, p)
		}
		seen[p] = true
		node, err := t.add(e)
		if err != nil {
			return err
		}
		if n.IsDir() && isImpliedLook(&e) && !described[e.Path] {
			node.synthetic = true
		}
		if !n.IsReg() {
			return nil
		}
		if fd := files[n.Nid]; fd != nil {
			fd.shared = true
			node.data = fd
			return nil
		}
		files[n.Nid] = node.data
		addrs, err := rd.Chunks(n)
		if err != nil {
			return err
		}
		for i, a := range addrs {
			c := chunks[a.CIIndex]
			want := min(uint64(rd.ChunkSize), e.Size-uint64(i)*uint64(rd.ChunkSize))
			if c == nil || a.BlobIndex != 0 || uint64(a.BlkAddr)*rafs.BlockSize != c.uoff || uint64(c.usize) != want {
				return fmt.Errorf("%w: %s: chunk %d (blob chunk %d) disagrees with the chunk table", rafs.ErrCorrupt, p, i, a.CIIndex)
			}
			node.data.chunks = append(node.data.chunks, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortChildren(t.root)
	return t, nil
}
