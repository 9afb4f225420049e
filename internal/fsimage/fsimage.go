// Package fsimage reads images whose manifests, configs and layers are files of an fs.FS:
// an OCI layout directory, or a tar (an OCI archive, a docker archive) read in place. Small
// files are read with a size bound, blobs are verified against their descriptors as they
// stream, and a layer is opened afresh on every read. It is shared by the layout and
// archive packages and knows nothing of Nydus.
package fsimage

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/internal/verify"
)

// MaxJSONSize bounds index.json, manifests and configs read from a store, so a corrupt size
// or file cannot make us allocate without limit. Real ones are kilobytes.
const MaxJSONSize = 64 << 20

// Open opens a file of fsys and returns it with its size. The caller closes it.
func Open(fsys fs.FS, name string) (fs.File, int64, error) {
	f, err := fsys.Open(name)
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

// ReadFile reads a whole small file of fsys, refusing one over [MaxJSONSize].
func ReadFile(fsys fs.FS, name string) ([]byte, error) {
	f, size, err := Open(fsys, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > MaxJSONSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", name, size, MaxJSONSize)
	}
	return io.ReadAll(io.LimitReader(f, size))
}

// OpenVerified opens the file at name through a reader that checks it against desc's digest
// and size; the reader fails at its end if they are wrong.
func OpenVerified(fsys fs.FS, name string, desc v1.Descriptor) (io.ReadCloser, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("opening blob %s: %w", desc.Digest, err)
	}
	return verify.ReadCloser(f, desc.Size, desc.Digest)
}

// ReadBlob reads a small blob (manifest, index, config) stored at name and verifies it
// against desc.
func ReadBlob(fsys fs.FS, name string, desc v1.Descriptor) ([]byte, error) {
	if desc.Size < 0 || desc.Size > MaxJSONSize {
		return nil, fmt.Errorf("blob %s: size %d is outside 0..%d", desc.Digest, desc.Size, MaxJSONSize)
	}
	rc, err := OpenVerified(fsys, name, desc)
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

// Stored is an image whose manifest and config are already read and whose layers are files
// of a store.
type Stored struct {
	FS          fs.FS
	Descriptor  v1.Descriptor // of the manifest, with the platform and annotations it was listed with
	RawManifest []byte
	Manifest    *v1.Manifest // parsed RawManifest
	RawConfig   []byte
	// LayerPath says where the layer with a digest lives in FS.
	LayerPath func(v1.Hash) string
}

// Image completes s into a v1.Image. Its layers are read from their files and verified as
// they stream; Descriptor() returns s.Descriptor.
func (s Stored) Image() (v1.Image, error) {
	return partial.CompressedToImage(&storedImage{s})
}

// ReadImage reads the manifest desc names, stored at blobPath(desc.Digest), and its config,
// and returns the image over them.
func ReadImage(fsys fs.FS, desc v1.Descriptor, blobPath func(v1.Hash) string) (v1.Image, error) {
	raw, err := ReadBlob(fsys, blobPath(desc.Digest), desc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", desc.Digest, err)
	}
	cfg, err := ReadBlob(fsys, blobPath(m.Config.Digest), m.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config of manifest %s: %w", desc.Digest, err)
	}
	return Stored{FS: fsys, Descriptor: desc, RawManifest: raw, Manifest: m, RawConfig: cfg, LayerPath: blobPath}.Image()
}

// storedImage is the core partial completes into a v1.Image.
type storedImage struct{ s Stored }

var _ partial.CompressedImageCore = (*storedImage)(nil)

func (i *storedImage) MediaType() (types.MediaType, error) { return i.s.Descriptor.MediaType, nil }
func (i *storedImage) RawManifest() ([]byte, error)        { return i.s.RawManifest, nil }
func (i *storedImage) RawConfigFile() ([]byte, error)      { return i.s.RawConfig, nil }

// Descriptor keeps the platform and annotations the manifest was listed with.
func (i *storedImage) Descriptor() (*v1.Descriptor, error) {
	d := i.s.Descriptor
	return &d, nil
}

func (i *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	n := slices.IndexFunc(i.s.Manifest.Layers, func(d v1.Descriptor) bool { return d.Digest == h })
	if n < 0 {
		return nil, fmt.Errorf("manifest %s has no layer %s", i.s.Descriptor.Digest, h)
	}
	return &storedLayer{fsys: i.s.FS, path: i.s.LayerPath(h), desc: i.s.Manifest.Layers[n]}, nil
}

// storedLayer is a layer read from a file of a store, verified against its descriptor.
type storedLayer struct {
	fsys fs.FS
	path string
	desc v1.Descriptor
}

var _ partial.CompressedLayer = (*storedLayer)(nil)

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Compressed opens the layer afresh; the reader fails at its end if the digest is wrong.
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	return OpenVerified(l.fsys, l.path, l.desc)
}

// Descriptor keeps the layer's annotations and URLs.
func (l *storedLayer) Descriptor() (*v1.Descriptor, error) {
	d := l.desc
	return &d, nil
}
