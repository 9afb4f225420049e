package packer

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// History entry appended to the config for the bootstrap layer, as nydus-snapshotter writes it.
const (
	historyCreatedBy = "Nydus Converter"
	historyComment   = "Nydus Bootstrap Layer"
)

// Blob is a data blob as the build wrote it.
type Blob struct {
	// Path is the blob file. It must stay in place while the image is used.
	Path string
	// Digest is the sha256 of the file and Size its length, as the build computed them.
	// They are not recomputed here; every read of the file is checked against them instead.
	Digest v1.Hash
	Size   int64
	// Layer, when set, supplies the blob's bytes instead of Path (a blob
	// already in a registry, to be mounted or copied from there); its
	// digest, size and media type must be the blob's.
	Layer v1.Layer
	// Meta is nydusd's blob.meta for this blob, stored in the bootstrap layer as
	// image/<Digest hex>.blob.meta; nil when the blob has none (a layer without data).
	Meta []byte
}

// Build is what the build produced for one platform image.
type Build struct {
	Blobs     []Blob // in layer order; may be empty
	Bootstrap []byte // the merged bootstrap
}

// Options configures [Image].
type Options struct {
	// SourceRef is the source reference as the user wrote it, for [AnnotationSourceReference].
	SourceRef string
	// WorkDir is where the bootstrap layer's gzip is written ("" means os.TempDir()). The
	// image reads that file, so it must outlive the image's use; removing it (with WorkDir)
	// is the caller's job.
	WorkDir string
	// OCI gives the image OCI media types whatever the source's family, as upstream's
	// --oci does: manifest application/vnd.oci.image.manifest.v1+json, config
	// application/vnd.oci.image.config.v1+json, bootstrap layer the OCI gzip layer type.
	// False keeps the source manifest's family (and its config's media type).
	OCI bool
	// FSVersion is the bootstrap's RAFS version for [AnnotationFSVersion]:
	// "6" or "5"; "" means [FSVersion].
	FSVersion string
	// BlobsElsewhere lays the image out for storage-backend mode (upstream's
	// --backend-type, docs/storage-backends.md): the blobs live in an object
	// store, so the manifest lists only the bootstrap layer, the config's
	// diff_ids only its diff_id, and the history is that layer's one entry.
	// The bootstrap layer still carries every blob's blob.meta.
	BlobsElsewhere bool
}

// Source is the source image of one platform as the converter resolved it:
// the image, and its manifest's descriptor (media type, digest, size, and
// the platform and annotations an index lists it with).
type Source struct {
	Image      v1.Image
	Descriptor v1.Descriptor
}

// Image gives one platform image's build the shape of a Nydus image, and computes it now
// (nothing is left lazy but layer reads):
//
//   - layers: each blob in the order given, stored as it is with media type
//     [MediaTypeNydusBlob] and [AnnotationNydusBlob]="true" (its digest and diff_id are both
//     Blob.Digest); then the bootstrap layer with [AnnotationNydusBootstrap]="true" and
//     [AnnotationFSVersion]=[FSVersion]: a gzip tar (Go's default level) holding the
//     directory "image/" (0755), [BootstrapName] (0444) and each blob's Meta as
//     "image/<digest hex>.blob.meta" (0444), headers without owner, group or time as
//     nydus-snapshotter's packToTar writes them, so the same build gives the same bytes; its
//     media type is [BootstrapMediaType] of the manifest's;
//   - config: the source config unchanged (unknown fields included) but for rootfs.diff_ids,
//     which become the blob digests (a blob is its own diff) then the bootstrap tar's digest,
//     and one history entry {created_by: "Nydus Converter", comment: "Nydus Bootstrap Layer"}
//     appended to the existing ones; its descriptor keeps the source config media type
//     (with opts.OCI, the OCI config type);
//   - manifest: the source's media type (with opts.OCI, the OCI manifest type), with annotations [AnnotationSourceDigest] (the
//     source manifest digest), [AnnotationSourceReference] and [AnnotationFSVersion].
//
// src is the source image of one platform: its Descriptor gives the source manifest's media
// type and digest, which must be OCI or docker schema 2.
func Image(src Source, build Build, opts Options) (v1.Image, error) {
	if err := checkManifestType(src.Descriptor.MediaType); err != nil {
		return nil, err
	}
	blobs := make([]v1.Layer, len(build.Blobs))
	var metas []namedFile
	for i, b := range build.Blobs {
		l, err := blobLayer(b)
		if err != nil {
			return nil, fmt.Errorf("assembling nydus image: blob %d: %w", i, err)
		}
		blobs[i] = l
		if b.Meta != nil {
			metas = append(metas, namedFile{name: b.Digest.Hex + blobMetaSuffix, data: b.Meta})
		}
	}
	mediaType := src.Descriptor.MediaType
	if opts.OCI {
		mediaType = types.OCIManifestSchema1
	}
	boot, err := bootstrapLayer(build.Bootstrap, metas, BootstrapMediaType(mediaType), opts.WorkDir)
	if err != nil {
		return nil, err
	}
	return assemble(src, blobs, boot, opts)
}

// assemble builds the image of src from its blob layers and bootstrap layer, as [Image]
// describes.
func assemble(src Source, blobs []v1.Layer, bootstrap v1.Layer, opts Options) (v1.Image, error) {
	mediaType := src.Descriptor.MediaType
	if err := checkManifestType(mediaType); err != nil {
		return nil, err
	}
	fsVersion := cmp.Or(opts.FSVersion, FSVersion)
	if fsVersion != "5" && fsVersion != "6" {
		return nil, fmt.Errorf("assembling nydus image: RAFS version %q", fsVersion)
	}
	srcManifest, err := src.Image.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading source manifest: %w", err)
	}
	configType := srcManifest.Config.MediaType
	if opts.OCI {
		mediaType, configType = types.OCIManifestSchema1, types.OCIConfigJSON
	}
	srcConfig, err := src.Image.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading source config: %w", err)
	}

	img := &nydusImage{mediaType: mediaType, layers: map[v1.Hash]v1.Layer{}}
	m := v1.Manifest{SchemaVersion: 2, MediaType: mediaType}
	var diffIDs []v1.Hash
	add := func(l v1.Layer, want types.MediaType, annotations map[string]string) error {
		desc := v1.Descriptor{Annotations: annotations}
		var err error
		if desc.MediaType, err = l.MediaType(); err != nil {
			return err
		}
		if desc.MediaType != want {
			return fmt.Errorf("media type is %q, want %q", desc.MediaType, want)
		}
		if desc.Digest, err = l.Digest(); err != nil {
			return err
		}
		if desc.Size, err = l.Size(); err != nil {
			return err
		}
		diffID, err := l.DiffID()
		if err != nil {
			return err
		}
		m.Layers = append(m.Layers, desc)
		img.layers[desc.Digest] = l
		diffIDs = append(diffIDs, diffID)
		return nil
	}
	if opts.BlobsElsewhere {
		blobs = nil
	}
	for i, b := range blobs {
		if err := add(b, MediaTypeNydusBlob, map[string]string{AnnotationNydusBlob: "true"}); err != nil {
			return nil, fmt.Errorf("assembling nydus image: blob %d: %w", i, err)
		}
	}
	if err := add(bootstrap, BootstrapMediaType(mediaType), map[string]string{
		AnnotationNydusBootstrap: "true",
		AnnotationFSVersion:      fsVersion,
	}); err != nil {
		return nil, fmt.Errorf("assembling nydus image: bootstrap layer: %w", err)
	}

	if img.rawConfig, err = rewriteConfig(srcConfig, diffIDs, opts.BlobsElsewhere); err != nil {
		return nil, fmt.Errorf("assembling nydus image: rewriting config: %w", err)
	}
	m.Config = v1.Descriptor{
		MediaType: configType,
		Size:      int64(len(img.rawConfig)),
		Digest:    sha256Bytes(img.rawConfig),
	}
	m.Annotations = map[string]string{
		AnnotationSourceDigest:    src.Descriptor.Digest.String(),
		AnnotationSourceReference: opts.SourceRef,
		AnnotationFSVersion:       fsVersion,
	}
	if img.rawManifest, err = marshal(m); err != nil {
		return nil, fmt.Errorf("assembling nydus image: encoding manifest: %w", err)
	}
	whole, err := partial.CompressedToImage(img)
	if err != nil {
		return nil, err
	}
	order := make([]v1.Hash, len(m.Layers))
	for i, d := range m.Layers {
		order[i] = d.Digest
	}
	return &ownLayers{Image: whole, core: img, order: order}, nil
}

// ownLayers hands out the image's layers as they were given, where partial
// would wrap them: a pusher recognises a layer to mount from another
// repository (remote.MountableLayer) only by its type.
type ownLayers struct {
	v1.Image
	core  *nydusImage
	order []v1.Hash // manifest order
}

func (i *ownLayers) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, ok := i.core.layers[h]
	if !ok {
		return i.Image.LayerByDigest(h) // the config blob
	}
	return l, nil
}

func (i *ownLayers) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(i.order))
	for k, h := range i.order {
		out[k] = i.core.layers[h]
	}
	return out, nil
}

// checkManifestType refuses a source manifest media type a Nydus image cannot take.
func checkManifestType(mt types.MediaType) error {
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return fmt.Errorf("assembling nydus image: source manifest media type %q is neither OCI nor docker schema 2", mt)
	}
	return nil
}

// rewriteConfig replaces rootfs and appends the bootstrap history entry (or, with
// onlyBootstrap, makes it the only entry), keeping every other field of the config as it is.
func rewriteConfig(raw []byte, diffIDs []v1.Hash, onlyBootstrap bool) ([]byte, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, fmt.Errorf("config is %s, not an object", raw)
	}
	// The known fields must have their types: a config whose "os" is an array
	// would otherwise be published as it came (found by FuzzRewriteConfig).
	var typed v1.ConfigFile
	if err := json.Unmarshal(raw, &typed); err != nil {
		return nil, fmt.Errorf("not a valid image config: %w", err)
	}
	var history []json.RawMessage
	if h, ok := cfg["history"]; ok && !onlyBootstrap {
		if err := json.Unmarshal(h, &history); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
	}
	entry, err := marshal(struct {
		CreatedBy string `json:"created_by"`
		Comment   string `json:"comment"`
	}{historyCreatedBy, historyComment})
	if err != nil {
		return nil, err
	}
	if cfg["history"], err = marshal(append(history, entry)); err != nil {
		return nil, err
	}
	if cfg["rootfs"], err = marshal(v1.RootFS{Type: "layers", DiffIDs: diffIDs}); err != nil {
		return nil, err
	}
	return marshal(cfg)
}

// marshal encodes v as compact JSON without escaping <, > and & (shell commands in history
// keep their "&&"), which json.Marshal would turn into \u0026.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func sha256Bytes(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// nydusImage is the core of an assembled image; partial completes it into a v1.Image.
type nydusImage struct {
	mediaType   types.MediaType
	rawManifest []byte
	rawConfig   []byte
	layers      map[v1.Hash]v1.Layer // by digest
}

var _ partial.CompressedImageCore = (*nydusImage)(nil)

func (i *nydusImage) MediaType() (types.MediaType, error) { return i.mediaType, nil }
func (i *nydusImage) RawManifest() ([]byte, error)        { return i.rawManifest, nil }
func (i *nydusImage) RawConfigFile() ([]byte, error)      { return i.rawConfig, nil }

func (i *nydusImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	l, ok := i.layers[h]
	if !ok {
		return nil, fmt.Errorf("nydus image has no layer %s", h)
	}
	return l, nil
}
