package rafsbuild

import (
	"fmt"
	"strings"

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

// Merge stacks layers (lowest first) with overlay semantics and writes the
// image bootstrap (§5.2): a whiteout `.wh.NAME` removes NAME from the layers
// below, an opaque marker `.wh..wh..opq` hides everything below in its
// directory, a non-directory replaces a directory with its subtree and the
// other way round, and markers themselves never reach the result. The blob
// table lists the blobs in the order the final tree, walked breadth first,
// first references them, as upstream's merge does; each is named by its
// layer digest. Merge consumes the layers' trees. All layers must have been
// built with the same options.
func Merge(layers []*Layer, opts Options) (*Merged, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("merging: no layers")
	}
	base := layers[0].tree
	stripMarkers(base.root)
	for _, l := range layers[1:] {
		applyLayer(base.root, l.tree.root)
	}
	sortChildren(base.root)
	lay, err := layout(base, uint64(opts.ChunkSize))
	if err != nil {
		return nil, err
	}

	params := &bootstrapParams{
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

// applyLayer overlays the upper directory up onto lower.
func applyLayer(lower, up *node) {
	if !up.synthetic {
		lower.entry = up.entry
	}
	for _, c := range up.children {
		if c.name == whiteoutOpaque {
			lower.children = nil
		}
	}
	for _, c := range up.children {
		if name, ok := strings.CutPrefix(c.name, whiteoutPrefix); ok && c.name != whiteoutOpaque {
			lower.removeChildNamed(name)
		}
	}
	for _, c := range up.children {
		if strings.HasPrefix(c.name, whiteoutPrefix) {
			continue
		}
		old := lower.child(c.name)
		if old != nil && old.isDir() && c.isDir() {
			applyLayer(old, c)
			continue
		}
		if old != nil {
			lower.removeChildNamed(c.name)
		}
		stripMarkers(c)
		c.parent = lower
		lower.children = append(lower.children, c)
	}
}

// stripMarkers drops whiteout markers from a subtree that has nothing below
// it to hide.
func stripMarkers(n *node) {
	kept := n.children[:0]
	for _, c := range n.children {
		if strings.HasPrefix(c.name, whiteoutPrefix) {
			continue
		}
		if c.isDir() {
			stripMarkers(c)
		}
		kept = append(kept, c)
	}
	n.children = kept
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
