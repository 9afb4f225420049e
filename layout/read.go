// Package layout is the place images live in an OCI image layout directory
// (oci:DIR[:TAG]): index.json naming images and indexes by their
// org.opencontainers.image.ref.name annotation, and content-addressed files under blobs/.
// It reads an image or index by tag, from a directory or from any fs.FS holding a layout
// (the archive package passes a tar read in place), and writes one: blobs first, then
// index.json. It speaks ggcr's v1.Image and v1.ImageIndex and knows nothing of Nydus.
//
// Reading reads index.json, manifests and configs; a layer is read only when a caller opens
// it, and every blob is checked against its digest as it streams.
package layout

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nydus-go/nydusify/internal/fsimage"
)

// Artifact is what a layout names by tag: a v1.Image or a v1.ImageIndex.
type Artifact interface {
	partial.Describable
	RawManifest() ([]byte, error)
}

// BlobDir returns the directory of a layout at dir that holds its sha256 blobs, each named
// by its hex digest.
func BlobDir(dir string) string { return filepath.Join(dir, "blobs", "sha256") }

// blobPath is where a layout keeps the blob with digest h, relative to its root.
func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// dirFS is a layout directory. Unlike os.DirFS its errors name the full path.
type dirFS string

func (d dirFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
}

// Open reads the layout at dir and returns the image or index its index.json names by tag:
// the entry whose org.opencontainers.image.ref.name is tag, or with tag "" the only entry.
// The descriptor is index.json's entry, annotations included.
func Open(dir, tag string) (v1.Descriptor, Artifact, error) {
	return OpenFS(dirFS(dir), tag)
}

// OpenFS is [Open] for a layout held in fsys (its root holding index.json). Every file is
// opened afresh on each read, so fsys must stay readable while the result is used.
func OpenFS(fsys fs.FS, tag string) (v1.Descriptor, Artifact, error) {
	raw, err := fsimage.ReadFile(fsys, "index.json")
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading index.json: %w", err)
	}
	top, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("parsing index.json: %w", err)
	}
	var found []v1.Descriptor
	for _, d := range top.Manifests {
		if tag == "" || d.Annotations[ocispec.AnnotationRefName] == tag {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		var names []string
		for _, d := range top.Manifests {
			names = append(names, fmt.Sprintf("%q", d.Annotations[ocispec.AnnotationRefName]))
		}
		what := "a single image"
		if tag != "" {
			what = fmt.Sprintf("one image named %q", tag)
		}
		return v1.Descriptor{}, nil, fmt.Errorf("index.json has %d matching entries, want %s (names: %s)",
			len(found), what, strings.Join(names, ", "))
	}
	desc := found[0]
	switch {
	case desc.MediaType.IsIndex():
		idx, err := readIndex(fsys, desc)
		if err != nil {
			return v1.Descriptor{}, nil, err
		}
		return desc, idx, nil
	case desc.MediaType.IsImage():
		img, err := fsimage.ReadImage(fsys, desc, blobPath)
		if err != nil {
			return v1.Descriptor{}, nil, err
		}
		return desc, img, nil
	}
	return v1.Descriptor{}, nil, fmt.Errorf("index.json entry %s has media type %q, which is neither an image nor an index", desc.Digest, desc.MediaType)
}

// index is an index stored in a layout.
type index struct {
	fsys     fs.FS
	desc     v1.Descriptor
	raw      []byte
	manifest *v1.IndexManifest
}

var _ v1.ImageIndex = (*index)(nil)

func readIndex(fsys fs.FS, desc v1.Descriptor) (*index, error) {
	raw, err := fsimage.ReadBlob(fsys, blobPath(desc.Digest), desc)
	if err != nil {
		return nil, fmt.Errorf("reading index %s: %w", desc.Digest, err)
	}
	m, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing index %s: %w", desc.Digest, err)
	}
	return &index{fsys: fsys, desc: desc, raw: raw, manifest: m}, nil
}

func (i *index) MediaType() (types.MediaType, error) { return i.desc.MediaType, nil }
func (i *index) Digest() (v1.Hash, error)            { return i.desc.Digest, nil }
func (i *index) Size() (int64, error)                { return i.desc.Size, nil }
func (i *index) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *index) IndexManifest() (*v1.IndexManifest, error) {
	return i.manifest.DeepCopy(), nil
}

// child finds the descriptor of a manifest the index lists.
func (i *index) child(h v1.Hash) (v1.Descriptor, error) {
	n := slices.IndexFunc(i.manifest.Manifests, func(d v1.Descriptor) bool { return d.Digest == h })
	if n < 0 {
		return v1.Descriptor{}, fmt.Errorf("index %s does not list %s", i.desc.Digest, h)
	}
	return i.manifest.Manifests[n], nil
}

func (i *index) Image(h v1.Hash) (v1.Image, error) {
	desc, err := i.child(h)
	if err != nil {
		return nil, err
	}
	return fsimage.ReadImage(i.fsys, desc, blobPath)
}

func (i *index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	desc, err := i.child(h)
	if err != nil {
		return nil, err
	}
	return readIndex(i.fsys, desc)
}
