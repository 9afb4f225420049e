package packer

import (
	"encoding/json"
	"fmt"
	"maps"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
)

// annotationLegacyBlobIDs is a manifest annotation of old Nydus images
// listing blob ids; copy drops it, as upstream's copy does.
const annotationLegacyBlobIDs = "containerd.io/snapshot/nydus-blob-ids"

// AttachBlobs turns an image made in storage-backend mode (its manifest lists
// only the bootstrap layer) into a self-contained one, as upstream's copy
// with a source backend does: the blob layers, each with media type
// [MediaTypeNydusBlob] and [AnnotationNydusBlob]="true", come before the
// manifest's layers, and their digests before the config's diff_ids (a Nydus
// blob's diff_id is its digest); the history and every other field stay as
// they are. The blobs' bytes are read only when the image is written.
func AttachBlobs(img v1.Image, blobs []v1.Layer) (v1.Image, error) {
	mediaType, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest: %w", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	var cfg map[string]json.RawMessage
	var typed v1.ConfigFile
	if err := json.Unmarshal(rawConfig, &cfg); err != nil || cfg == nil {
		return nil, fmt.Errorf("config is not a JSON object: %v", err)
	}
	if err := json.Unmarshal(rawConfig, &typed); err != nil {
		return nil, fmt.Errorf("not a valid image config: %w", err)
	}
	out := &nydusImage{mediaType: mediaType, layers: map[v1.Hash]v1.Layer{}}
	var descs []v1.Descriptor
	var diffIDs []v1.Hash
	for i, b := range blobs {
		d, err := b.Digest()
		if err != nil {
			return nil, fmt.Errorf("blob %d: %w", i, err)
		}
		size, err := b.Size()
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", d, err)
		}
		descs = append(descs, v1.Descriptor{MediaType: MediaTypeNydusBlob, Digest: d, Size: size,
			Annotations: map[string]string{AnnotationNydusBlob: "true"}})
		diffIDs = append(diffIDs, d)
		out.layers[d] = b
	}
	for _, l := range m.Layers {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, err
		}
		out.layers[l.Digest] = layer
	}
	if cfg["rootfs"], err = marshal(v1.RootFS{Type: "layers", DiffIDs: append(diffIDs, typed.RootFS.DiffIDs...)}); err != nil {
		return nil, err
	}
	if out.rawConfig, err = marshal(cfg); err != nil {
		return nil, err
	}
	nm := *m // img's own manifest stays as it is
	nm.Layers = append(descs, m.Layers...)
	nm.Config.Digest, nm.Config.Size = sha256Bytes(out.rawConfig), int64(len(out.rawConfig))
	nm.Annotations = maps.Clone(m.Annotations)
	delete(nm.Annotations, annotationLegacyBlobIDs)
	if out.rawManifest, err = marshal(nm); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(out)
}
