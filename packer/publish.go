package packer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/internal/verify"
)

// Platformed is an image with the platform an index lists it under.
type Platformed struct {
	Platform v1.Platform
	Image    v1.Image
}

// DefaultLayoutTag is the org.opencontainers.image.ref.name an OCI layout target gets when
// its Ref has no Name.
const DefaultLayoutTag = "latest"

// Publish writes images to target and returns the descriptor of what it named: one image is
// written as a plain manifest; several as an index of the same family (OCI image index for
// OCI manifests, docker manifest list for docker ones) listing each with its platform, in
// the order given. Every blob is written before the manifests that name it, and each
// manifest before the index, so a reader never sees a manifest whose blobs are missing.
//
//   - Registry: pushed with ggcr's remote pusher under opts (at most opts.Jobs blob uploads
//     at once; blobs the registry already has are skipped). The tag, or digest, of the
//     target's Name is set last.
//   - OCI layout: the directory (and its oci-layout file) is created if missing. Blobs are
//     written to temporary files, verified against their digests and renamed into place;
//     then index.json is rewritten the same way, replacing any entry whose
//     org.opencontainers.image.ref.name is the target's Name ([DefaultLayoutTag] if empty).
//     A failure therefore leaves index.json as it was (perhaps with unreferenced blobs).
//     Concurrent Publish calls to one layout may lose each other's index.json entries.
//   - Archives: not supported as targets yet.
func Publish(ctx context.Context, target imageref.Ref, images []Platformed, opts imageref.RegistryOptions) (v1.Descriptor, error) {
	artifact, err := artifactOf(images)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("publishing to %s: %w", target, err)
	}
	desc, err := describe(artifact)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("publishing to %s: %w", target, err)
	}
	switch target.Kind {
	case imageref.Registry:
		err = pushRegistry(ctx, target, artifact, opts)
	case imageref.OCILayout:
		tag := target.Name
		if tag == "" {
			tag = DefaultLayoutTag
		}
		err = writeLayout(ctx, target.Path, tag, artifact, desc)
	default:
		err = fmt.Errorf("%s is not supported as a target yet", target.Kind)
	}
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("publishing to %s: %w", target, err)
	}
	return desc, nil
}

// artifact is what Publish writes: a v1.Image or a v1.ImageIndex.
type artifact interface {
	partial.Describable
	RawManifest() ([]byte, error)
}

// artifactOf returns the single image, or an index of all of them in the images' family.
func artifactOf(images []Platformed) (artifact, error) {
	switch len(images) {
	case 0:
		return nil, errors.New("no images")
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
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		indexType := types.OCIImageIndex
		if mt == types.DockerManifestSchema2 {
			indexType = types.DockerManifestList
		}
		if i > 0 && indexType != idx.manifest.MediaType {
			return nil, fmt.Errorf("image %d is %s, but image 0 belongs in a %s", i, mt, idx.manifest.MediaType)
		}
		idx.manifest.MediaType = indexType
		if p.Platform.OS == "" || p.Platform.Architecture == "" {
			return nil, fmt.Errorf("image %d has no platform, which an index needs", i)
		}
		desc, err := describe(p.Image)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		for _, d := range idx.manifest.Manifests {
			if d.Platform.Equals(p.Platform) {
				return nil, fmt.Errorf("platform %s appears twice", p.Platform)
			}
		}
		desc.Platform = &p.Platform
		idx.manifest.Manifests = append(idx.manifest.Manifests, desc)
		idx.images[desc.Digest] = p.Image
	}
	var err error
	if idx.raw, err = marshal(idx.manifest); err != nil {
		return nil, fmt.Errorf("encoding index: %w", err)
	}
	return idx, nil
}

// describe returns the media type, size and digest of a manifest or index. Unlike
// partial.Descriptor it sets no artifactType, which containerd does not write either and
// docker manifest lists do not define.
func describe(a artifact) (v1.Descriptor, error) {
	var (
		d   v1.Descriptor
		err error
	)
	if d.MediaType, err = a.MediaType(); err != nil {
		return d, err
	}
	if d.Size, err = a.Size(); err != nil {
		return d, err
	}
	d.Digest, err = a.Digest()
	return d, err
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

// pushRegistry pushes with ggcr, which uploads layers and config (opts.Jobs at a time), then
// each child manifest, and puts the manifest or index named by the target last.
func pushRegistry(ctx context.Context, target imageref.Ref, a artifact, opts imageref.RegistryOptions) error {
	ref, err := opts.Reference(target)
	if err != nil {
		return err
	}
	ropts, err := opts.RemoteOptions()
	if err != nil {
		return err
	}
	p, err := remote.NewPusher(ropts...)
	if err != nil {
		return err
	}
	if err := p.Push(ctx, ref, a); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// writeLayout writes a's blobs into the layout at dir, then points tag at desc in index.json.
// Cancelling ctx stops it before the next blob.
func writeLayout(ctx context.Context, dir, tag string, a artifact, desc v1.Descriptor) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return fmt.Errorf("creating layout: %w", err)
	}
	layoutFile := filepath.Join(dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.WriteFile(layoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`), 0o644); err != nil {
			return fmt.Errorf("creating layout: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("checking layout: %w", err)
	}
	switch a := a.(type) {
	case v1.Image:
		if err := writeImage(ctx, dir, a); err != nil {
			return err
		}
	case v1.ImageIndex:
		im, err := a.IndexManifest()
		if err != nil {
			return err
		}
		for _, child := range im.Manifests {
			img, err := a.Image(child.Digest)
			if err != nil {
				return fmt.Errorf("reading manifest %s: %w", child.Digest, err)
			}
			if err := writeImage(ctx, dir, img); err != nil {
				return err
			}
		}
		if err := writeRawBlob(ctx, dir, a); err != nil {
			return fmt.Errorf("writing index: %w", err)
		}
	}
	return updateIndexJSON(dir, tag, desc)
}

// writeImage writes an image's layers, config and manifest, in that order.
func writeImage(ctx context.Context, dir string, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		if err := writeBlob(ctx, dir, h, size, l.Compressed); err != nil {
			return fmt.Errorf("writing layer %s: %w", h, err)
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("reading config digest: %w", err)
	}
	if err := writeBlob(ctx, dir, cfgName, int64(len(cfg)), bytesOpener(cfg)); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	if err := writeRawBlob(ctx, dir, img); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// writeRawBlob writes a manifest or index as a blob.
func writeRawBlob(ctx context.Context, dir string, a artifact) error {
	raw, err := a.RawManifest()
	if err != nil {
		return err
	}
	h, err := a.Digest()
	if err != nil {
		return err
	}
	return writeBlob(ctx, dir, h, int64(len(raw)), bytesOpener(raw))
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// writeBlob stores a blob unless a file of its size is already in place: it copies into a
// temporary file beside the target, checks digest and size on the way, syncs and renames it.
func writeBlob(ctx context.Context, dir string, h v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	final := filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		return nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	vr, err := verify.ReadCloser(rc, size, h)
	if err != nil {
		return err
	}
	defer vr.Close()
	return atomicfile.Write(final, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, vr)
		return err
	})
}

// updateIndexJSON replaces the index.json entry named tag by desc, or adds it.
func updateIndexJSON(dir, tag string, desc v1.Descriptor) error {
	path := filepath.Join(dir, "index.json")
	index := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if index, err = v1.ParseIndexManifest(bytes.NewReader(raw)); err != nil {
			return fmt.Errorf("parsing index.json: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("reading index.json: %w", err)
	}
	kept := index.Manifests[:0]
	for _, d := range index.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] != tag {
			kept = append(kept, d)
		}
	}
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	index.Manifests = append(kept, desc)
	out, err := marshal(index)
	if err != nil {
		return fmt.Errorf("encoding index.json: %w", err)
	}
	if err := atomicfile.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("writing index.json: %w", err)
	}
	return nil
}
