package rafsbuild

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/rafs"
)

// Layer is one OCI layer converted to a Nydus blob that carries its own
// bootstrap, as `nydus-image create --type tar-rafs --blob-inline-meta
// --features blob-toc --whiteout-spec none` writes it. Whiteout markers stay
// ordinary empty files here; Merge consumes them.
type Layer struct {
	tree *tree

	// Digest is the sha256 (hex) of the blob file: its registry digest and
	// its blob id in a merged bootstrap. It stays a hex string, the RAFS
	// blob id's form, because rafsbuild does not import ggcr; callers make
	// the OCI digest v1.Hash{Algorithm: "sha256", Hex: Digest}.
	Digest string
	Size   int64
	// BlobMeta is nydusd's `<blob id>.blob.meta` for this blob (chunk info
	// padded to 4 KiB plus the meta header), nil when the layer has no data.
	BlobMeta []byte
	Stats    LayerStats
}

// LayerStats counts what a layer conversion did.
type LayerStats struct {
	Entries     int    `json:"entries"`
	DataBytes   uint64 `json:"data_bytes"`
	Chunks      uint64 `json:"chunks"`
	DedupChunks uint64 `json:"dedup_chunks"` // chunks already stored, here or below
	DictChunks  uint64 `json:"cross_layer_dedup_chunks"`
	DedupBytes  uint64 `json:"dedup_bytes"`
	BlobChunks  uint32 `json:"blob_chunks"`
}

// inlineBlobID is the placeholder id a bootstrap inlined in its own blob
// records (§2.9): the blob's name is not known while it is being written.
var inlineBlobID = strings.Repeat("x", 64)

// ErrPathEscape is wrapped by errors about tar entries that would land
// outside the image root.
var ErrPathEscape = errors.New("path escapes the image root")

// BuildLayer streams the uncompressed layer tar r into blob: chunk data as
// entries arrive (tar order), then the chunk trailer, the layer's bootstrap
// and the TOC. Memory is bounded by chunk size × queue depth plus per-entry
// metadata; a file's chunk references grow as its bytes are read, whatever
// size its header claims. Tar semantics: PAX/GNU long names, hardlinks (to
// files earlier in the layer), symlinks, devices, fifos, SCHILY.xattr
// records, sparse files, "./" and "/" prefixes, ".." cleaned lexically,
// later duplicates replacing earlier ones, parents reached through the
// layer's own symlinks (resolve.go). Refused, with an error naming the
// entry: names climbing above the root (ErrPathEscape); hardlinks to
// directories; ids above 2^32-1 and device numbers RAFS cannot hold; a
// whiteout name used as a directory; content ending before its claimed size.
//
// With a dict, chunks already stored by lower layers of the image are
// referenced there instead of being written again, and this layer's chunks
// are added to it once the layer is complete.
func BuildLayer(ctx context.Context, r io.Reader, blob *os.File, opts Options, dict *ChunkDict) (*Layer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	t := newTree()
	bw := newBlobWriter(blob, &opts, true)
	bw.dict = dict
	l := &Layer{tree: t}
	stopProgress := reportProgress(&opts, Progress{}, bw)
	err := l.readTar(ctx, tar.NewReader(r), bw, &opts)
	stopProgress()
	if err != nil {
		bw.drain()
		return nil, err
	}
	res, err := bw.finishData()
	if err != nil {
		return nil, err
	}
	params := &bootstrapParams{
		// The layer's own bootstrap, inlined in its blob, stays v6 whatever
		// the image's version: only Merge writes the image bootstrap.
		version:   6,
		flags:     opts.Compressor.SuperFlag() | opts.Digester.SuperFlag(),
		chunkSize: uint64(opts.ChunkSize),
		blobIndex: map[*blobWriter]uint32{},
		prefetch:  prefetchNodes(t, opts.PrefetchPatterns),
	}
	if res.entry.ChunkCount > 0 {
		e := res.entry
		e.BlobID = inlineBlobID
		params.blobIndex[bw] = 0
		params.blobs = []rafs.BlobEntry{e}
	}
	sortChildren(t.root)
	params.addBlobsByReference(t, (*blobWriter).mergedEntry)
	lay, err := layout(t, uint64(opts.ChunkSize))
	if err != nil {
		return nil, err
	}
	boot, err := writeBootstrap(t, lay, params)
	if err != nil {
		return nil, err
	}
	if err := bw.appendBootstrap(boot); err != nil {
		return nil, err
	}
	if err := bw.finishTOC(res); err != nil {
		return nil, err
	}
	l.Digest, l.Size, l.BlobMeta = res.digest, int64(res.entry.CompressedSize), res.meta
	l.Stats = LayerStats{
		Entries: int(lay.inodes), DataBytes: res.stats.dataBytes, Chunks: res.stats.chunks,
		DedupChunks: res.stats.dedupChunks, DictChunks: res.stats.dictChunks, DedupBytes: res.stats.dedupBytes,
		BlobChunks: res.entry.ChunkCount,
	}
	if dict != nil {
		dict.add(bw)
	}
	return l, nil
}

// cleanTarPath maps a tar entry name to a tree path ("" is the root). Names
// are cleaned lexically, as containerd's applier cleans them: "f/../g" is
// "g", "/../g" is "/g". A relative name that climbs above the root
// ("../g", "a/../../g") is refused, where containerd would clamp it.
func cleanTarPath(name string) (string, error) {
	if c := path.Clean(name); c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("tar entry %q: %w", name, ErrPathEscape)
	}
	return strings.Trim(path.Clean("/"+name), "/"), nil
}

// checkWhiteoutParents refuses a path whose directories carry a whiteout
// name. Whiteouts are files: `.wh.NAME` deletes NAME below, and Merge reads
// every node so named as a marker, so a tree holding `.wh.keep/zz` would
// delete keep and drop zz. containerd's applier only looks at base names and
// would create a directory named `.wh.keep` instead; such names have no
// meaning in OCI layers, so they are an error here rather than a guess.
func checkWhiteoutParents(name, p string) error {
	parts := strings.Split(p, "/")
	for _, part := range parts[:len(parts)-1] {
		if strings.HasPrefix(part, whiteoutPrefix) {
			return fmt.Errorf("%w: tar entry %q uses the whiteout name %q as a directory; OCI whiteouts are files",
				ErrUnsupported, name, part)
		}
	}
	return nil
}

func (l *Layer) readTar(ctx context.Context, tr *tar.Reader, bw *blobWriter, opts *Options) error {
	t := l.tree
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading layer tar: %w", err)
		}
		p, err := cleanTarPath(hdr.Name)
		if err != nil {
			return err
		}
		if err := checkWhiteoutParents(hdr.Name, p); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if p, err = t.resolveParent(p); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		e, err := tarEntry(hdr, p, opts)
		if err != nil {
			return err
		}
		if e == nil {
			continue
		}
		if p != "" {
			if err := t.ensureParents(p); err != nil {
				return err
			}
		}
		if hdr.Typeflag == tar.TypeLink {
			target, err := cleanTarPath(hdr.Linkname)
			if err != nil {
				return err
			}
			if target, err = t.resolveLinkTarget(target); err != nil {
				return fmt.Errorf("hardlink %q to %q: %w", hdr.Name, hdr.Linkname, err)
			}
			if err := t.addHardlink(*e, target); err != nil {
				return err
			}
			continue
		}
		n, err := t.replace(*e)
		if err != nil {
			return err
		}
		if n.isReg() && n.data.size > 0 {
			if err := bw.addFile(ctx, hdr.Name, n.data, tr); err != nil {
				if short := (*shortReadError)(nil); errors.As(err, &short) {
					return fmt.Errorf("layer truncated or corrupt: tar entry %q: %w", hdr.Name, err)
				}
				return err
			}
		}
	}
}

// tarEntry converts a tar header; it returns nil for entries that carry no
// file (PAX global headers).
func tarEntry(hdr *tar.Header, p string, opts *Options) (*Entry, error) {
	// RAFS keeps 32-bit ids; a larger one must not wrap (to 0: root).
	for _, id := range []struct {
		kind string
		v    int
	}{{"uid", hdr.Uid}, {"gid", hdr.Gid}} {
		if id.v < 0 || uint64(id.v) > math.MaxUint32 {
			return nil, fmt.Errorf("%w: tar entry %q has %s %d; RAFS stores ids from 0 to %d",
				ErrUnsupported, hdr.Name, id.kind, id.v, uint32(math.MaxUint32))
		}
	}
	e := &Entry{
		Path: p, Mode: uint32(hdr.Mode) & 0o7777, UID: uint32(hdr.Uid), GID: uint32(hdr.Gid),
		Mtime: hdr.ModTime.Unix(), MtimeNsec: uint32(hdr.ModTime.Nanosecond()),
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeLink:
		e.Mode |= rafs.ModeReg
		if hdr.Typeflag != tar.TypeLink {
			e.Size = uint64(hdr.Size)
		}
	case tar.TypeDir:
		e.Mode |= rafs.ModeDir
	case tar.TypeSymlink:
		// Linux gives every symlink mode 0777 whatever the tar header says, so
		// containerd and umoci unpack the source that way; storing 0777 makes
		// the kernel mount, our FUSE mount and unpack show what they show.
		e.Mode = rafs.ModeLnk | 0o777
		e.Target = hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		e.Mode |= rafs.ModeChr
		if hdr.Typeflag == tar.TypeBlock {
			e.Mode = e.Mode&^rafs.ModeFmt | rafs.ModeBlk
		}
		// The 32-bit device number holds a 12-bit major and a 20-bit minor.
		if hdr.Devmajor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor < 0 || hdr.Devminor > 0xfffff {
			return nil, fmt.Errorf("%w: tar entry %q is device %d:%d; RAFS stores majors up to 4095 and minors up to 1048575",
				ErrUnsupported, hdr.Name, hdr.Devmajor, hdr.Devminor)
		}
		e.Rdev = rafs.EncodeRdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	case tar.TypeFifo:
		e.Mode |= rafs.ModeFifo
	case tar.TypeXGlobalHeader:
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: tar entry %q has type %q", ErrUnsupported, hdr.Name, hdr.Typeflag)
	}
	if p == "" && e.Mode&rafs.ModeFmt != rafs.ModeDir {
		return nil, fmt.Errorf("%w: tar entry %q names the root but is not a directory", ErrUnsupported, hdr.Name)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		x := []rafs.Xattr{{Name: name, Value: []byte(v)}}
		if _, err := rafs.XattrAreaSize(x); err != nil {
			logs.Or(opts.Logger).Warnf("%s: skipping xattr: %v", hdr.Name, err)
			continue
		}
		e.Xattrs = append(e.Xattrs, x[0])
	}
	slices.SortFunc(e.Xattrs, func(a, b rafs.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return e, nil
}

// ensureParents creates missing ancestors of p as upstream does: mode 0755,
// owner 0, mtime 0.
func (t *tree) ensureParents(p string) error {
	dir := path.Dir(p)
	if dir == "." {
		return nil
	}
	if n, ok := t.dirs[dir]; ok && n.isDir() {
		return nil
	}
	if err := t.ensureParents(dir); err != nil {
		return err
	}
	n, err := t.replace(Entry{Path: dir, Mode: rafs.ModeDir | 0o755})
	if err == nil {
		n.synthetic = true
	}
	return err
}

// replace inserts e, replacing any existing node at its path: a directory
// over a directory only takes the new metadata and keeps its children; any
// other replacement drops the old node (and a directory's subtree).
func (t *tree) replace(e Entry) (*node, error) {
	if e.Path == "" {
		return t.add(e)
	}
	dir, name := path.Split(e.Path)
	parent := t.dirs[strings.TrimSuffix(dir, "/")]
	if parent == nil {
		return nil, fmt.Errorf("adding %s: parent directory missing", e.Path)
	}
	if old := parent.child(name); old != nil {
		if old.isDir() && e.Mode&rafs.ModeFmt == rafs.ModeDir {
			if err := validateEntry(&e); err != nil {
				return nil, err
			}
			old.entry, old.synthetic = e, false
			return old, nil
		}
		t.removeChild(parent, old)
	}
	return t.add(e)
}

func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

// removeChild unlinks c from parent and forgets c's subtree directories.
func (t *tree) removeChild(parent, c *node) {
	parent.children = slices.DeleteFunc(parent.children, func(x *node) bool { return x == c })
	var forget func(n *node)
	forget = func(n *node) {
		if n.isDir() {
			delete(t.dirs, n.entry.Path)
			for _, k := range n.children {
				forget(k)
			}
		}
	}
	forget(c)
}

// addHardlink adds e as another path of the regular file at target, which
// must be earlier in the same layer. Links to symlinks, devices and fifos
// become independent copies, as RAFS only models regular-file hardlinks;
// a link to a directory is an error (no applier can create one).
func (t *tree) addHardlink(e Entry, target string) error {
	dir, name := path.Split(target)
	parent := t.dirs[strings.TrimSuffix(dir, "/")]
	var tn *node
	if parent != nil {
		tn = parent.child(name)
	}
	if tn == nil || target == "" {
		return fmt.Errorf("%w: hardlink %s points to %q, which is not earlier in this layer", ErrUnsupported, e.Path, target)
	}
	if tn.isDir() {
		return fmt.Errorf("%w: hardlink %q points to directory %q; directories cannot be hardlinked", ErrUnsupported, e.Path, target)
	}
	link := tn.entry
	link.Path = e.Path
	n, err := t.replace(link)
	if err != nil {
		return err
	}
	if n.isReg() {
		tn.data.shared = true
		n.data = tn.data
	}
	return nil
}
