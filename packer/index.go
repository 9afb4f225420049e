package packer

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platformed is an image with the platform an index lists it under.
type Platformed struct {
	Platform v1.Platform
	Image    v1.Image
}

// Artifact is what a place publishes: a v1.Image or a v1.ImageIndex.
type Artifact interface {
	partial.Describable
	RawManifest() ([]byte, error)
}

// Combine returns what is published for images: one image as it is (a plain manifest);
// several as an index of the same family (OCI image index for OCI manifests, docker
// manifest list for docker ones) listing each with its platform, in the order given. The
// index entries carry no artifactType. Mixed families, a repeated platform or an image
// without a platform in an index are errors.
func Combine(images []Platformed) (Artifact, error) {
	switch len(images) {
	case 0:
		return nil, errors.New("combining images: no images")
	case 1:
		return images[0].Image, nil
	}
	idx := &nydusIndex{
		manifest: v1.IndexManifest{SchemaVersion: 2},
		images:   map[v1.Hash]v1.Image{},
	}
	for i, p := range images {
		mt, err := p.Image.MediaType()
		if err != nil {
			return nil, fmt.Errorf("combining images: image %d: %w", i, err)
		}
		indexType := types.OCIImageIndex
		if mt == types.DockerManifestSchema2 {
			indexType = types.DockerManifestList
		}
		if i > 0 && indexType != idx.manifest.MediaType {
			return nil, fmt.Errorf("combining images: image %d is %s, but image 0 belongs in a %s", i, mt, idx.manifest.MediaType)
		}
		idx.manifest.MediaType = indexType
		if p.Platform.OS == "" || p.Platform.Architecture == "" {
			return nil, fmt.Errorf("combining images: image %d has no platform, which an index needs", i)
		}
		desc := v1.Descriptor{MediaType: mt}
		if desc.Size, err = p.Image.Size(); err != nil {
			return nil, fmt.Errorf("combining images: image %d: %w", i, err)
		}
		if desc.Digest, err = p.Image.Digest(); err != nil {
			return nil, fmt.Errorf("combining images: image %d: %w", i, err)
		}
		for _, d := range idx.manifest.Manifests {
			if d.Platform.Equals(p.Platform) {
				return nil, fmt.Errorf("combining images: platform %s appears twice", p.Platform)
			}
		}
		desc.Platform = &p.Platform
		idx.manifest.Manifests = append(idx.manifest.Manifests, desc)
		idx.images[desc.Digest] = p.Image
	}
	var err error
	if idx.raw, err = marshal(idx.manifest); err != nil {
		return nil, fmt.Errorf("combining images: encoding index: %w", err)
	}
	return idx, nil
}

// nydusIndex is an index over images held in memory.
type nydusIndex struct {
	manifest v1.IndexManifest
	raw      []byte
	images   map[v1.Hash]v1.Image // by manifest digest
}

var _ v1.ImageIndex = (*nydusIndex)(nil)

func (i *nydusIndex) MediaType() (types.MediaType, error)       { return i.manifest.MediaType, nil }
func (i *nydusIndex) Digest() (v1.Hash, error)                  { return sha256Bytes(i.raw), nil }
func (i *nydusIndex) Size() (int64, error)                      { return int64(len(i.raw)), nil }
func (i *nydusIndex) RawManifest() ([]byte, error)              { return i.raw, nil }
func (i *nydusIndex) IndexManifest() (*v1.IndexManifest, error) { return i.manifest.DeepCopy(), nil }

func (i *nydusIndex) Image(h v1.Hash) (v1.Image, error) {
	img, ok := i.images[h]
	if !ok {
		return nil, fmt.Errorf("index has no image %s", h)
	}
	return img, nil
}

func (i *nydusIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("index has no nested index %s", h)
}
