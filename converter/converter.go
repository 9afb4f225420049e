// Package converter turns an OCI or Docker image into a Nydus image: the
// only package that knows the whole conversion flow.
//
// It first opens the source's manifests, refuses a source that is already Nydus, and
// checks that the target takes a push (imageref.CheckTarget) before reading any layer.
// For each selected platform it then streams every source layer, decompressed,
// through rafsbuild.BuildLayer (layers in parallel, each on its own unless
// cross-layer dedup is asked for) into a blob spilled to the work directory,
// or takes the layer from the build cache (buildcache.go), merges the layers' bootstraps with overlay rules, wraps blobs
// and bootstrap as an OCI image (packer; OCI media types whatever the
// source's family) and publishes it last, after every
// platform converted: a failed or interrupted conversion publishes nothing.
package converter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"golang.org/x/sync/errgroup"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// Options configure a conversion. Source and one of Target/TargetSuffix are
// required.
type Options struct {
	Source       string // imageref syntax: registry ref, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF]
	Target       string // registry ref or oci:DIR[:TAG]
	TargetSuffix string // target = source registry ref (tag normalised) + suffix

	Platforms    []v1.Platform // nil: the host's linux/GOARCH
	AllPlatforms bool

	// Build configures the layer builds and the merge. Nil PrefetchPatterns
	// means "/": every bootstrap gets the prefetch table [root], as
	// upstream's converters write it.
	Build          rafsbuild.Options
	SourceRegistry registry.Options
	TargetRegistry registry.Options

	// WorkDir holds spilled layers and blobs while converting; a fresh
	// directory below it, nydusify-convert-<pid>-<random>, is removed at the
	// end, and those left there by killed conversions (pid gone) are removed
	// at the start. Default: the OS temp dir.
	WorkDir string
	// Concurrency bounds parallel layer downloads, layer conversions and
	// blob uploads (default 4).
	Concurrency int
	// CrossLayerDedup leaves out of each layer's blob the chunks that lower
	// layers of the same image already store, and has its bootstrap point
	// into their blobs. That saves space in one image, but a layer's blob
	// then depends on the layers below it (the same layer converts to
	// another blob over another base, so registries and nodes stop sharing
	// it), layers convert one after another, and upstream's per-layer
	// tools cannot use the blobs alone. Off by default: each layer's blob
	// and bootstrap are a function of the layer and the options.
	CrossLayerDedup bool
	// BuildCache, when its Ref or Tag is set, reuses layers converted
	// before with the same options (docs/build-cache.md); it conflicts
	// with CrossLayerDedup. The cache lives in the target registry's
	// credentials and transport (TargetRegistry).
	BuildCache BuildCache
	// Progress, if set, receives events as the conversion advances.
	Progress func(Event)

	// Backend, when set, is storage-backend mode (docs/storage-backends.md):
	// every data blob is pushed there (Concurrency at a time) and the
	// published image holds only the bootstrap layer. Blobs the backend
	// already has are skipped unless BackendForcePush.
	Backend          backend.Pusher
	BackendForcePush bool
}

func (o *Options) jobs() int {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	return 4
}

// EventKind says what an Event reports.
type EventKind int

const (
	EventPlatformStart EventKind = iota
	EventLayerStart
	EventLayerDone
	EventMerged
	EventPublishing
)

// Event is a progress report.
type Event struct {
	Kind     EventKind
	Platform string
	Layer    int // index of the layer, for layer events
	Layers   int
	Digest   v1.Hash      // source layer digest, for layer events
	Size     int64        // compressed source layer size
	Report   *LayerReport // EventLayerDone
}

// Report is what a conversion did; it is also the --output-json document.
type Report struct {
	Source    string           `json:"source"`
	Target    string           `json:"target"`
	Digest    v1.Hash          `json:"target_digest"`
	MediaType string           `json:"target_media_type"`
	Platforms []PlatformReport `json:"platforms"`
	// Skipped lists index entries that are not images to convert
	// (attestations, artifacts); they are not carried into the target.
	Skipped    []v1.Hash    `json:"skipped_manifests,omitempty"`
	BuildCache *CacheReport `json:"build_cache,omitempty"`
	Timings    Timings      `json:"timings_ms"`
}

// PlatformReport describes one converted platform image.
type PlatformReport struct {
	Platform      string        `json:"platform"`
	SourceDigest  v1.Hash       `json:"source_manifest"`
	Layers        []LayerReport `json:"layers"`
	BootstrapSize int           `json:"bootstrap_size"`
	Blobs         []string      `json:"bootstrap_blob_table"`
	SourceBytes   int64         `json:"source_compressed_bytes"`
	BlobBytes     int64         `json:"blob_bytes"`
	DataBytes     uint64        `json:"data_bytes"`
	Chunks        uint64        `json:"chunks"`
	DedupChunks   uint64        `json:"dedup_chunks"`
	// BackendBlobs says where each blob went in storage-backend mode.
	BackendBlobs []backend.PushResult `json:"backend_blobs,omitempty"`
}

// Timings of the conversion phases in milliseconds.
type Timings struct {
	Resolve int64 `json:"resolve"`
	Convert int64 `json:"convert"`
	Publish int64 `json:"publish"`
	Total   int64 `json:"total"`
}

type converter struct {
	opts  Options
	work  string
	cache *buildCache // nil without a build cache
	// blobs are the converted blobs of every platform, as layers, for
	// the build cache's upload.
	blobs map[v1.Hash]v1.Layer
}

func (c *converter) progress(e Event) {
	if c.opts.Progress != nil {
		c.opts.Progress(e)
	}
}

// Convert converts opts.Source into a Nydus image published at the target.
func Convert(ctx context.Context, opts Options) (*Report, error) {
	start := time.Now()
	if opts.Source == "" {
		return nil, errors.New("a source image is required")
	}
	if opts.Build.PrefetchPatterns == nil {
		opts.Build.PrefetchPatterns = []string{"/"}
	}
	if err := opts.Build.Validate(); err != nil {
		return nil, err
	}
	if err := opts.BuildCache.check(opts.CrossLayerDedup); err != nil {
		return nil, err
	}
	if opts.BuildCache.enabled() && opts.Backend != nil {
		return nil, errors.New("the build cache does not work with a storage backend yet: its records are registry blobs, and mounted into the target repository")
	}
	src, err := imageref.Parse(opts.Source)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var dst imageref.Ref
	switch {
	case opts.Target != "" && opts.TargetSuffix != "":
		return nil, errors.New("give a target or a target suffix, not both")
	case opts.Target != "":
		if dst, err = imageref.ParseTarget(opts.Target); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	case opts.TargetSuffix != "":
		if dst, err = src.WithSuffix(opts.TargetSuffix); err != nil {
			return nil, fmt.Errorf("target suffix: %w", err)
		}
	default:
		return nil, errors.New("a target or a target suffix is required")
	}
	work, done, err := makeWorkDir(orTemp(opts.WorkDir), logs.Or(opts.Build.Logger))
	if err != nil {
		return nil, err
	}
	defer done()
	if opts.Build.Workers == 0 {
		opts.Build.Workers = runtime.GOMAXPROCS(0)
	}
	c := &converter{opts: opts, work: work}

	source, err := imageref.OpenSource(ctx, src, opts.SourceRegistry)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	images, skipped, err := source.Images(opts.Platforms, opts.AllPlatforms)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src, err)
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("source %s has no manifest for the requested platforms", src)
	}
	for _, pi := range images {
		if err := notNydus(pi); err != nil {
			return nil, fmt.Errorf("source %s: %w", src, err)
		}
	}
	// Nothing has read a layer yet: find out now, not after converting, whether the target
	// takes the result.
	if err := imageref.CheckTarget(ctx, dst, opts.TargetRegistry); err != nil {
		return nil, err
	}
	if ch, ok := opts.Backend.(interface{ Check(context.Context) error }); ok {
		if err := ch.Check(ctx); err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
	}
	var cache *buildCache
	if opts.BuildCache.enabled() {
		target := ""
		if dst.Kind == imageref.Registry {
			target = dst.Name
		}
		if cache, err = openCache(ctx, opts.BuildCache, target, opts.TargetRegistry, opts.Build); err != nil {
			return nil, err
		}
	}
	rep := &Report{Source: src.String(), Target: dst.String()}
	for _, d := range skipped {
		rep.Skipped = append(rep.Skipped, d.Digest)
	}
	resolved := time.Now()

	var outs []packer.Platformed
	blobs := map[v1.Hash]v1.Layer{}
	for i, pi := range images {
		dir := filepath.Join(work, fmt.Sprintf("platform-%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		pc := &converter{opts: opts, work: dir, cache: cache, blobs: blobs}
		img, prep, err := pc.convertImage(ctx, pi, src.String(), src.Kind == imageref.Registry)
		if err != nil {
			return nil, fmt.Errorf("platform %s: %w", platformString(pi.Platform), err)
		}
		outs = append(outs, packer.Platformed{Platform: pi.Platform, Image: img})
		rep.Platforms = append(rep.Platforms, *prep)
	}
	converted := time.Now()

	artifact, err := packer.Combine(outs)
	if err != nil {
		return nil, err
	}
	if cache != nil {
		// Before the target: a cache naming blobs the target lacks is
		// harmless, a target pushed without its cache would not be reused.
		if err := cache.push(ctx, blobs); err != nil {
			return nil, err
		}
		cr := cache.rep
		rep.BuildCache = &cr
		logs.Or(opts.Build.Logger).Infof("build cache %s: hits %d, misses %d, records kept %d", cr.Ref, cr.Hits, cr.Misses, cr.Records)
	}
	c.progress(Event{Kind: EventPublishing})
	desc, err := imageref.Publish(ctx, dst, artifact, opts.TargetRegistry)
	if err != nil {
		return nil, err
	}
	rep.Digest, rep.MediaType = desc.Digest, string(desc.MediaType)
	rep.Timings = Timings{
		Resolve: resolved.Sub(start).Milliseconds(), Convert: converted.Sub(resolved).Milliseconds(),
		Publish: time.Since(converted).Milliseconds(), Total: time.Since(start).Milliseconds(),
	}
	return rep, nil
}

// convertImage converts one platform image into a Nydus image whose layers
// are files in the work directory.
func (c *converter) convertImage(ctx context.Context, pi imageref.PlatformImage, sourceRef string, remote bool) (v1.Image, *PlatformReport, error) {
	plat := platformString(pi.Platform)
	c.progress(Event{Kind: EventPlatformStart, Platform: plat})
	layers, err := pi.Image.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("listing layers: %w", err)
	}
	if len(layers) == 0 {
		return nil, nil, errors.New("the image has no layers")
	}
	cf, err := pi.Image.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the config: %w", err)
	}
	if n := len(cf.RootFS.DiffIDs); n != len(layers) {
		return nil, nil, fmt.Errorf("the config lists %d diff_ids for %d layers", n, len(layers))
	}
	converted, reports, err := c.convertLayers(ctx, layers, remote, pi.Platform)
	if err != nil {
		return nil, nil, err
	}
	for i, cl := range converted {
		// A cached layer was not read: its diff_id was checked when it
		// was converted.
		if want := cf.RootFS.DiffIDs[i]; cl.diffID != want && cl.cached == nil {
			return nil, nil, fmt.Errorf("layer %d of %d (%s): its uncompressed content hashes to %s, the config's diff_id is %s",
				i+1, len(layers), reports[i].SourceDigest, cl.diffID, want)
		}
	}
	built := make([]*rafsbuild.Layer, len(converted))
	for i, cl := range converted {
		built[i] = cl.layer
	}
	merged, err := rafsbuild.Merge(built, c.opts.Build)
	if err != nil {
		return nil, nil, fmt.Errorf("merging layers: %w", err)
	}
	c.progress(Event{Kind: EventMerged, Platform: plat})
	build := packer.Build{Bootstrap: merged.Bootstrap}
	for i, cl := range converted {
		// The same layer twice in a stack makes the same blob twice (the
		// upper copy hides every file of the lower): one layer is enough.
		if slices.ContainsFunc(converted[:i], func(o convertedLayer) bool { return o.layer.Digest == cl.layer.Digest }) {
			continue
		}
		var cached v1.Layer
		if cl.cached != nil {
			cached = c.cache.layer(*cl.cached)
		}
		build.Blobs = append(build.Blobs, packer.Blob{
			Layer:  cached,
			Path:   cl.path,
			Digest: v1.Hash{Algorithm: "sha256", Hex: cl.layer.Digest},
			Size:   cl.layer.Size,
			Meta:   cl.layer.BlobMeta,
		})
	}
	// Always OCI (upstream's --oci): a Nydus blob layer's media type is an OCI one, and a
	// docker schema 2 manifest holding it is refused by skopeo and containers/image
	// ("unsupported docker v2s2 media type"), so a docker source's family cannot be kept.
	var pushed []backend.PushResult
	if c.opts.Backend != nil {
		if pushed, err = c.pushBlobs(ctx, converted); err != nil {
			return nil, nil, err
		}
	}
	img, err := packer.Image(packer.Source{Image: pi.Image, Descriptor: pi.Descriptor}, build,
		packer.Options{SourceRef: sourceRef, WorkDir: c.work, OCI: true, BlobsElsewhere: c.opts.Backend != nil,
			FSVersion: fsVersionName(c.opts.Build.FsVersion)})
	if err != nil {
		return nil, nil, err
	}
	if c.cache != nil {
		ls, err := img.Layers()
		if err != nil {
			return nil, nil, err
		}
		fresh := map[v1.Hash]bool{}
		for _, cl := range converted {
			if cl.cached == nil {
				fresh[v1.Hash{Algorithm: "sha256", Hex: cl.layer.Digest}] = true
			}
		}
		for _, l := range ls {
			if d, err := l.Digest(); err == nil && fresh[d] {
				c.blobs[d] = l
			}
		}
	}
	rep := &PlatformReport{
		Platform: plat, SourceDigest: pi.Descriptor.Digest, Layers: reports,
		BootstrapSize: len(merged.Bootstrap), Blobs: merged.Blobs, BackendBlobs: pushed,
	}
	for _, r := range reports {
		rep.SourceBytes += r.SourceSize
		rep.BlobBytes += r.BlobSize
		rep.DataBytes += r.DataBytes
		rep.Chunks += r.Chunks
		rep.DedupChunks += r.DedupChunks
	}
	return img, rep, nil
}

// pushBlobs stores the converted layers' blobs in the backend, Concurrency
// at a time, before anything is published.
func (c *converter) pushBlobs(ctx context.Context, layers []convertedLayer) ([]backend.PushResult, error) {
	res := make([]backend.PushResult, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.jobs())
	for i, cl := range layers {
		g.Go(func() error {
			r, err := c.opts.Backend.PushBlob(gctx, cl.layer.Digest, cl.path, c.opts.BackendForcePush)
			if err != nil {
				return fmt.Errorf("pushing blob %s to the backend: %w", cl.layer.Digest, err)
			}
			res[i] = r
			return nil
		})
	}
	return res, g.Wait()
}

// ErrAlreadyNydus is wrapped by the error of a conversion whose source is a Nydus image.
var ErrAlreadyNydus = errors.New("source is already a Nydus image; nothing to convert")

// notNydus refuses a source image that is already Nydus: a Nydus blob layer, or a last layer
// marked as a Nydus bootstrap (which is how nydus-snapshotter recognises one).
func notNydus(pi imageref.PlatformImage) error {
	m, err := pi.Image.Manifest()
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	for i, l := range m.Layers {
		if l.MediaType == packer.MediaTypeNydusBlob || l.Annotations[packer.AnnotationNydusBlob] == "true" ||
			(i == len(m.Layers)-1 && l.Annotations[packer.AnnotationNydusBootstrap] == "true") {
			return fmt.Errorf("platform %s: %w", platformString(pi.Platform), ErrAlreadyNydus)
		}
	}
	return nil
}

func platformString(p v1.Platform) string {
	if p.OS == "" && p.Architecture == "" {
		return "(no platform)"
	}
	parts := []string{p.OS, p.Architecture}
	if p.Variant != "" {
		parts = append(parts, p.Variant)
	}
	return strings.Join(parts, "/")
}

func orTemp(dir string) string {
	if dir == "" {
		return os.TempDir()
	}
	return dir
}

// fsVersionName is the annotation value of a RAFS version (0 means 6).
func fsVersionName(v int) string {
	if v == 5 {
		return "5"
	}
	return packer.FSVersion
}
