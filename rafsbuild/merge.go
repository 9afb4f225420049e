package rafsbuild

import (
	"fmt"

	"github.com/nydus-go/nydusify/rafs"
)

// OCI whiteout markers (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Merged is the image bootstrap made from a stack of layers.
type Merged struct {
	Bootstrap []byte
	// Blobs lists the layer digests of the blob table, in table order: the
	// order of the `device=` options of a kernel mount. Layers whose data is
	// entirely hidden (or that have none) are absent.
	Blobs []string
}

// Merge stacks layers (lowest first) the way containerd applies them
// (apply.go) and writes the image bootstrap (§5.2): a whiteout `.wh.NAME`
// removes NAME from the layers below, an opaque marker `.wh..wh..opq` hides
// everything below in its directory, a non-directory replaces a directory
// with its subtree and the other way round, entries below a symlinked
// parent land where the symlink leads (within the image root), and markers
// themselves never reach the result. A stack whose result would depend on
// what a layer tree does not keep (the order of its tar entries) is refused
// with ErrUnsupported, naming the path. The blob table lists the blobs in
// the order the final tree, walked breadth first, first references them, as
// upstream's merge does; each is named by its layer digest. Merge consumes
// the layers' trees. All layers must have been built with the same options.
func Merge(layers []*Layer, opts Options) (*Merged, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("merging: no layers")
	}
	m := newMerger()
	for i, l := range layers {
		if err := m.apply(l.tree, i+1); err != nil {
			return nil, err
		}
	}
	base := &tree{root: m.root}
	sortChildren(base.root)
	lay, err := layout(base, uint64(opts.ChunkSize))
	if err != nil {
		return nil, err
	}

	params := &bootstrapParams{
		version:   opts.FsVersion,
		flags:     opts.Compressor.SuperFlag() | opts.Digester.SuperFlag() | rafs.FlagHasXattr,
		chunkSize: uint64(opts.ChunkSize),
		blobIndex: map[*blobWriter]uint32{},
		prefetch:  prefetchNodes(base, opts.PrefetchPatterns),
	}
	params.addBlobsByReference(base, (*blobWriter).mergedEntry)
	res := &Merged{}
	for _, e := range params.blobs {
		res.Blobs = append(res.Blobs, e.BlobID)
	}
	if len(params.blobs) > rafs.MaxBlobs {
		return nil, fmt.Errorf("%w: the image references %d blobs, RAFS v6 allows %d", ErrUnsupported, len(params.blobs), rafs.MaxBlobs)
	}
	if res.Bootstrap, err = writeBootstrap(base, lay, params); err != nil {
		return nil, err
	}
	return res, nil
}

func (n *node) removeChildNamed(name string) {
	for i, c := range n.children {
		if c.name == name {
			n.children = append(n.children[:i], n.children[i+1:]...)
			return
		}
	}
}

// mergedEntry is a finished layer blob's entry in an image bootstrap: named
// by its digest, without the inline-bootstrap feature (§2.9).
func (b *blobWriter) mergedEntry() rafs.BlobEntry {
	e := b.final.entry
	e.BlobID = b.final.digest
	e.Features &^= rafs.BlobInlinedFsMeta
	return e
}
