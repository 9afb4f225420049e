package converter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/internal/verify"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// The build cache image (docs/build-cache.md): acceleration-service's layout
// (an OCI index, one manifest per platform whose layers are Nydus blob
// descriptors annotated with their source layer digest, most recently used
// first), with a record matching only when the conversion options that shape
// a layer's blob match too.
const (
	// AnnotationCacheVersion marks a cache manifest with --build-cache-version.
	AnnotationCacheVersion = "containerd.io/snapshot/nydus-cache-version"
	// AnnotationCacheKey holds, on a cache record, the conversion options its
	// blob was built with (cacheKey).
	AnnotationCacheKey = "io.github.nydus-go.nydusify.cache-key"
	// AnnotationCacheHints holds, on a cache record, what restoring the
	// layer needs besides the blob (rafsbuild.LayerHints as JSON), when
	// there is any.
	AnnotationCacheHints = "io.github.nydus-go.nydusify.layer-hints"

	// layerFormat names the revision of rafsbuild.BuildLayer's output.
	// It is part of the cache key: change it whenever a layer converts to
	// other bytes than before with the same options.
	layerFormat = 1
	// maxHints bounds a record's hints annotation; a layer needing more is
	// not recorded.
	maxHints = 4096
	// DefaultCacheRecords is --build-cache-max-records' default and
	// maximum, so that the cache image stays pullable by Docker.
	DefaultCacheRecords = 200
)

// BuildCache configures the build cache. Ref or Tag enables it.
type BuildCache struct {
	Ref string // registry reference of the cache image
	Tag string // or: the cache image is the target repository at this tag
	// Version is recorded on the cache manifests; manifests of another
	// version are ignored (and replaced). Default "v1".
	Version string
	// MaxRecords caps the records kept per platform, most recently used
	// first: 1 to 200, 0 means 200.
	MaxRecords int
}

// CacheReport says what the build cache did.
type CacheReport struct {
	Ref     string `json:"ref"`
	Hits    int    `json:"hits"`
	Misses  int    `json:"misses"`
	Records int    `json:"records"` // records pushed, all platforms together
}

func (bc BuildCache) enabled() bool { return bc.Ref != "" || bc.Tag != "" }

// check refuses settings that cannot work, before anything is read.
func (bc BuildCache) check(crossLayerDedup bool) error {
	switch {
	case !bc.enabled():
		return nil
	case bc.Ref != "" && bc.Tag != "":
		return errors.New("give a build cache reference or a build cache tag, not both")
	case bc.MaxRecords < 0 || bc.MaxRecords > DefaultCacheRecords:
		return fmt.Errorf("build cache records: %d is out of range; give 1 to %d", bc.MaxRecords, DefaultCacheRecords)
	case crossLayerDedup:
		return errors.New("the build cache and cross-layer dedup exclude each other: a layer's blob must depend on the layer alone to be reused")
	}
	return nil
}

// cacheKey is the part of a record's key that the options make: everything
// that changes a layer's blob (the fs version is always 6 here).
func cacheKey(o rafsbuild.Options) string {
	return fmt.Sprintf("layer-format=%d;fs-version=6;compressor=%s;digester=%s;chunk-size=%#x;prefetch=%s",
		layerFormat, o.Compressor, o.Digester, o.ChunkSize, strings.Join(o.PrefetchPatterns, ","))
}

// buildCache is a cache image being read and updated by one conversion.
type buildCache struct {
	ref     name.Reference
	opts    registry.Options
	ropts   []remote.Option
	key     string
	version string
	max     int
	old     *v1.IndexManifest          // as fetched; nil when there was none
	records map[string][]v1.Descriptor // fetched records by platform
	blobs   *backend.Registry          // ranged reads of the cache repository

	mu   sync.Mutex
	used map[string][]v1.Descriptor // records used or made now, by platform, in layer order
	plat map[string]v1.Platform     // the platforms of used
	rep  CacheReport
}

// openCache reads the cache image (none yet is an empty cache).
func openCache(ctx context.Context, bc BuildCache, dst string, opts registry.Options, build rafsbuild.Options) (*buildCache, error) {
	ref := bc.Ref
	if bc.Tag != "" {
		if dst == "" {
			return nil, errors.New("a build cache tag needs a registry target (the cache goes to the target repository)")
		}
		t, err := opts.Reference(dst)
		if err != nil {
			return nil, err
		}
		ref = t.Context().Tag(bc.Tag).String()
	}
	c := &buildCache{opts: opts, key: cacheKey(build), version: bc.Version, max: bc.MaxRecords,
		records: map[string][]v1.Descriptor{}, used: map[string][]v1.Descriptor{}, plat: map[string]v1.Platform{}}
	if c.version == "" {
		c.version = "v1"
	}
	if c.max == 0 {
		c.max = DefaultCacheRecords
	}
	var err error
	if c.ref, err = opts.Reference(ref); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	c.rep.Ref = c.ref.String()
	// The cache is written before the target: find out now, not after
	// converting, whether it can be.
	if err := registry.CheckPush(ctx, c.ref.String(), opts); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	if c.ropts, err = opts.RemoteOptions(); err != nil {
		return nil, err
	}
	c.ropts = append(c.ropts, remote.WithContext(ctx))
	tr, err := opts.Transport()
	if err != nil {
		return nil, err
	}
	if c.blobs, err = backend.NewRegistry(c.ref.Context(), backend.WithKeychain(opts.Credentials()),
		backend.WithTransport(tr), backend.WithRetry(opts.Policy())); err != nil {
		return nil, err
	}
	desc, err := remote.Get(c.ref, c.ropts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("build cache %s: %w", c.ref, err)
	}
	if !desc.MediaType.IsIndex() {
		return nil, fmt.Errorf("build cache %s is a %s, not a cache image (an OCI index); give another reference", c.ref, desc.MediaType)
	}
	if c.old, err = v1.ParseIndexManifest(bytes.NewReader(desc.Manifest)); err != nil {
		return nil, fmt.Errorf("build cache %s: %w", c.ref, err)
	}
	for _, md := range c.old.Manifests {
		if md.Platform == nil {
			continue
		}
		m, err := c.manifest(md.Digest)
		if err != nil {
			return nil, err
		}
		if m.Annotations[AnnotationCacheVersion] != c.version {
			continue
		}
		p := platformString(*md.Platform)
		c.records[p] = append(c.records[p], m.Layers...)
	}
	return c, nil
}

func (c *buildCache) manifest(d v1.Hash) (*v1.Manifest, error) {
	desc, err := remote.Get(c.ref.Context().Digest(d.String()), c.ropts...)
	if err != nil {
		return nil, fmt.Errorf("build cache %s: manifest %s: %w", c.ref, d, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("build cache %s: manifest %s: %w", c.ref, d, err)
	}
	return m, nil
}

// lookup returns the record of the source layer digest for platform, or
// nil.
func (c *buildCache) lookup(platform v1.Platform, source v1.Hash) *v1.Descriptor {
	for _, d := range c.records[platformString(platform)] {
		if d.Annotations[packer.AnnotationSourceDigest] == source.String() && d.Annotations[AnnotationCacheKey] == c.key &&
			d.MediaType == packer.MediaTypeNydusBlob {
			return &d
		}
	}
	return nil
}

// use notes that a record was used (hit) or made (miss) now.
func (c *buildCache) use(platform v1.Platform, d v1.Descriptor, hit bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := platformString(platform)
	c.used[p] = append(c.used[p], d)
	c.plat[p] = platform
	if hit {
		c.rep.Hits++
	} else {
		c.rep.Misses++
	}
}

// record makes the cache record of a freshly converted layer, or returns
// false when its hints are too large to keep.
func (c *buildCache) record(source v1.Hash, l *rafsbuild.Layer, hints rafsbuild.LayerHints) (v1.Descriptor, bool) {
	d := v1.Descriptor{
		MediaType: packer.MediaTypeNydusBlob, Digest: v1.Hash{Algorithm: "sha256", Hex: l.Digest}, Size: l.Size,
		Annotations: map[string]string{
			packer.AnnotationNydusBlob: "true", packer.AnnotationSourceDigest: source.String(), AnnotationCacheKey: c.key,
		},
	}
	if len(hints.Described)+len(hints.Assumed) > 0 {
		b, err := json.Marshal(hints)
		if err != nil || len(b) > maxHints {
			return d, false
		}
		d.Annotations[AnnotationCacheHints] = string(b)
	}
	return d, true
}

// restore reads a cached layer back through ranged reads of its blob.
func (c *buildCache) restore(ctx context.Context, d v1.Descriptor, opts rafsbuild.Options) (*rafsbuild.Layer, error) {
	var hints rafsbuild.LayerHints
	if h := d.Annotations[AnnotationCacheHints]; h != "" {
		if err := json.Unmarshal([]byte(h), &hints); err != nil {
			return nil, fmt.Errorf("build cache record %s: hints: %w", d.Digest, err)
		}
	}
	r := blobReaderAt{ctx: ctx, b: c.blobs, id: d.Digest.Hex}
	l, err := rafsbuild.RestoreLayer(r, d.Size, d.Digest.Hex, hints, opts)
	if err != nil {
		return nil, fmt.Errorf("build cache record %s: %w", d.Digest, err)
	}
	return l, nil
}

// layer is the cached blob as a layer of the target image: ggcr mounts it
// from the cache repository when the target is in the same registry, and
// otherwise copies it through Compressed.
func (c *buildCache) layer(d v1.Descriptor) v1.Layer {
	ref := c.ref.Context().Digest(d.Digest.String())
	return &remote.MountableLayer{Layer: &cachedBlob{desc: d, ref: ref, ropts: c.ropts}, Reference: ref}
}

// push writes the updated cache image: for each platform converted now, the
// records used or made (in layer order) then the older ones, without
// repeats, capped; other platforms' manifests stay. New blobs (layers, the
// blobs of the target image by digest) are uploaded to the cache repository
// first.
func (c *buildCache) push(ctx context.Context, layers map[v1.Hash]v1.Layer) error {
	cfg := static.NewLayer([]byte("{}"), types.OCIConfigJSON)
	if err := remote.WriteLayer(c.ref.Context(), cfg, c.ropts...); err != nil {
		return fmt.Errorf("build cache %s: %w", c.ref, err)
	}
	cfgDigest, _ := cfg.Digest()
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	kept := map[string]bool{}
	var platforms []string
	for p := range c.used {
		platforms = append(platforms, p)
	}
	slices.Sort(platforms)
	for _, p := range platforms {
		var recs []v1.Descriptor
		seen := map[string]bool{}
		for _, d := range append(slices.Clone(c.used[p]), c.records[p]...) {
			k := d.Annotations[packer.AnnotationSourceDigest] + "\x00" + d.Annotations[AnnotationCacheKey]
			if seen[k] || len(recs) == c.max {
				continue
			}
			seen[k] = true
			recs = append(recs, d)
		}
		for _, d := range recs {
			if l := layers[d.Digest]; l != nil {
				if err := remote.WriteLayer(c.ref.Context(), l, c.ropts...); err != nil {
					return fmt.Errorf("build cache %s: uploading blob %s: %w", c.ref, d.Digest, err)
				}
			}
		}
		m := v1.Manifest{
			SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
			Config:      v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: cfgDigest, Size: 2},
			Layers:      recs,
			Annotations: map[string]string{AnnotationCacheVersion: c.version},
		}
		raw, err := json.Marshal(m)
		if err != nil {
			return err
		}
		md := rawManifest{raw: raw, mt: types.OCIManifestSchema1}
		digest, size, _ := v1.SHA256(bytes.NewReader(raw))
		if err := remote.Put(c.ref.Context().Digest(digest.String()), md, c.ropts...); err != nil {
			return fmt.Errorf("build cache %s: %w", c.ref, err)
		}
		plat := c.plat[p]
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: digest, Size: size, Platform: &plat})
		kept[p] = true
		c.rep.Records += len(recs)
	}
	if c.old != nil {
		for _, md := range c.old.Manifests {
			if md.Platform != nil && !kept[platformString(*md.Platform)] {
				idx.Manifests = append(idx.Manifests, md)
			}
		}
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := remote.Put(c.ref, rawManifest{raw: raw, mt: types.OCIImageIndex}, c.ropts...); err != nil {
		return fmt.Errorf("build cache %s: %w", c.ref, err)
	}
	return nil
}

// rawManifest is a manifest or index to put as it is.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// cachedBlob is a Nydus blob of the cache repository as a layer.
type cachedBlob struct {
	desc  v1.Descriptor
	ref   name.Digest
	ropts []remote.Option
}

func (b *cachedBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *cachedBlob) DiffID() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *cachedBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *cachedBlob) MediaType() (types.MediaType, error) { return packer.MediaTypeNydusBlob, nil }
func (b *cachedBlob) Uncompressed() (io.ReadCloser, error) {
	return b.Compressed()
}

// Compressed streams the blob from the cache repository, verified against
// its digest and size.
func (b *cachedBlob) Compressed() (io.ReadCloser, error) {
	l, err := remote.Layer(b.ref, b.ropts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	return verify.ReadCloser(rc, b.desc.Size, b.desc.Digest)
}

// blobReaderAt reads one blob of a backend.
type blobReaderAt struct {
	ctx context.Context
	b   *backend.Registry
	id  string
}

func (r blobReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return r.b.ReadAt(r.ctx, r.id, p, off)
}
