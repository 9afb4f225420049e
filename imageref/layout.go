package imageref

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nydus-go/nydusify/internal/verify"
)

// maxJSONSize bounds index.json, manifests and configs read from layouts and archives, so a
// corrupt size or file cannot make us allocate without limit. Real ones are kilobytes.
const maxJSONSize = 64 << 20

// fileStore opens the files of an OCI layout (or of a docker archive) by their slash-separated
// path inside it: a directory on disk, or a tar read in place.
type fileStore interface {
	// open returns the file's content and size. Each call opens it afresh.
	open(name string) (io.ReadCloser, int64, error)
}

// dirStore is a layout directory.
type dirStore string

func (d dirStore) open(name string) (io.ReadCloser, int64, error) {
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// readFile reads a whole small file of a store.
func readFile(s fileStore, name string) ([]byte, error) {
	rc, size, err := s.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxJSONSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", name, size, maxJSONSize)
	}
	return io.ReadAll(io.LimitReader(rc, size))
}

// blobPath is where a layout keeps the blob with digest h.
func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// openVerified opens the file at name through a reader that checks it against desc's digest
// and size.
func openVerified(s fileStore, name string, desc v1.Descriptor) (io.ReadCloser, error) {
	rc, _, err := s.open(name)
	if err != nil {
		return nil, fmt.Errorf("opening blob %s: %w", desc.Digest, err)
	}
	return verify.ReadCloser(rc, desc.Size, desc.Digest)
}

// readBlob reads a small layout blob (manifest, index, config) and verifies it.
func readBlob(s fileStore, desc v1.Descriptor) ([]byte, error) {
	if desc.Size < 0 || desc.Size > maxJSONSize {
		return nil, fmt.Errorf("blob %s: size %d is outside 0..%d", desc.Digest, desc.Size, maxJSONSize)
	}
	rc, err := openVerified(s, blobPath(desc.Digest), desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", desc.Digest, err)
	}
	return b, nil
}

// openLayout opens the image or index that index.json names by tag: the entry whose
// org.opencontainers.image.ref.name is tag, or with tag "" the only entry.
func openLayout(s fileStore, tag string) (*Source, error) {
	raw, err := readFile(s, "index.json")
	if err != nil {
		return nil, fmt.Errorf("reading index.json: %w", err)
	}
	top, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing index.json: %w", err)
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
		return nil, fmt.Errorf("index.json has %d matching entries, want %s (names: %s)",
			len(found), what, strings.Join(names, ", "))
	}
	desc := found[0]
	switch {
	case desc.MediaType.IsIndex():
		idx, err := newLayoutIndex(s, desc)
		if err != nil {
			return nil, err
		}
		return &Source{desc: desc, index: idx}, nil
	case desc.MediaType.IsImage():
		img, err := newLayoutImage(s, desc)
		if err != nil {
			return nil, err
		}
		return &Source{desc: desc, image: img}, nil
	}
	return nil, fmt.Errorf("index.json entry %s has media type %q, which is neither an image nor an index", desc.Digest, desc.MediaType)
}

// layoutIndex is an index stored in a layout.
type layoutIndex struct {
	store    fileStore
	desc     v1.Descriptor
	raw      []byte
	manifest *v1.IndexManifest
}

var _ v1.ImageIndex = (*layoutIndex)(nil)

func newLayoutIndex(s fileStore, desc v1.Descriptor) (*layoutIndex, error) {
	raw, err := readBlob(s, desc)
	if err != nil {
		return nil, fmt.Errorf("reading index %s: %w", desc.Digest, err)
	}
	m, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing index %s: %w", desc.Digest, err)
	}
	return &layoutIndex{store: s, desc: desc, raw: raw, manifest: m}, nil
}

func (i *layoutIndex) MediaType() (types.MediaType, error) { return i.desc.MediaType, nil }
func (i *layoutIndex) Digest() (v1.Hash, error)            { return i.desc.Digest, nil }
func (i *layoutIndex) Size() (int64, error)                { return i.desc.Size, nil }
func (i *layoutIndex) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *layoutIndex) IndexManifest() (*v1.IndexManifest, error) {
	return i.manifest.DeepCopy(), nil
}

// child finds the descriptor of a manifest the index lists.
func (i *layoutIndex) child(h v1.Hash) (v1.Descriptor, error) {
	n := slices.IndexFunc(i.manifest.Manifests, func(d v1.Descriptor) bool { return d.Digest == h })
	if n < 0 {
		return v1.Descriptor{}, fmt.Errorf("index %s does not list %s", i.desc.Digest, h)
	}
	return i.manifest.Manifests[n], nil
}

func (i *layoutIndex) Image(h v1.Hash) (v1.Image, error) {
	desc, err := i.child(h)
	if err != nil {
		return nil, err
	}
	return newLayoutImage(i.store, desc)
}

func (i *layoutIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	desc, err := i.child(h)
	if err != nil {
		return nil, err
	}
	return newLayoutIndex(i.store, desc)
}

// storedImage is the core of an image whose manifest and config are already read and whose
// layers are files of a store; partial completes it into a v1.Image.
type storedImage struct {
	store     fileStore
	desc      v1.Descriptor // of the manifest
	raw       []byte
	manifest  *v1.Manifest
	rawConfig []byte
	// layerPath says where each layer lives in the store.
	layerPath func(v1.Hash) string
}

var _ partial.CompressedImageCore = (*storedImage)(nil)

// newLayoutImage reads the manifest desc names, and its config, from a layout.
func newLayoutImage(s fileStore, desc v1.Descriptor) (v1.Image, error) {
	raw, err := readBlob(s, desc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", desc.Digest, err)
	}
	cfg, err := readBlob(s, m.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config of manifest %s: %w", desc.Digest, err)
	}
	return partial.CompressedToImage(&storedImage{store: s, desc: desc, raw: raw, manifest: m, rawConfig: cfg, layerPath: blobPath})
}

func (i *storedImage) MediaType() (types.MediaType, error) { return i.desc.MediaType, nil }
func (i *storedImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *storedImage) RawConfigFile() ([]byte, error)      { return i.rawConfig, nil }

// Descriptor keeps the platform and annotations the manifest was listed with.
func (i *storedImage) Descriptor() (*v1.Descriptor, error) {
	d := i.desc
	return &d, nil
}

func (i *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	n := slices.IndexFunc(i.manifest.Layers, func(d v1.Descriptor) bool { return d.Digest == h })
	if n < 0 {
		return nil, fmt.Errorf("manifest %s has no layer %s", i.desc.Digest, h)
	}
	return &storedLayer{store: i.store, path: i.layerPath(h), desc: i.manifest.Layers[n]}, nil
}

// storedLayer is a layer read from a file of a store, verified against its descriptor.
type storedLayer struct {
	store fileStore
	path  string
	desc  v1.Descriptor
}

var _ partial.CompressedLayer = (*storedLayer)(nil)

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Compressed opens the layer afresh; the reader fails at its end if the digest is wrong.
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	return openVerified(l.store, l.path, l.desc)
}

// Descriptor keeps the layer's annotations and URLs.
func (l *storedLayer) Descriptor() (*v1.Descriptor, error) {
	d := l.desc
	return &d, nil
}
