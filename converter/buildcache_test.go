package converter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"log"
	"slices"

	ggcrlogs "github.com/google/go-containerregistry/pkg/logs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/nydus-go/nydusify/converter"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// TestBuildCache, against a real registry: an image converted once fills
// the cache (three misses); version 2 of it, with its third layer changed,
// hits the cache for the two others (report and log say so) and converts to
// the same manifest digest as a conversion of it without the cache, and the
// kernel mount of the result equals umoci's unpack of the source; the cached
// blobs are mounted from the cache repository, not uploaded. Another
// compressor or chunk size misses. The cache image has the
// acceleration-service shape (an index, one manifest per platform with the
// cache version, blob layers annotated with their source digest and our
// key), keeps the most recently used records first and stays within its cap.
func TestBuildCache(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	host := testenv.StartRegistry(t)
	regOpts := registry.Options{PlainHTTP: true}
	base := []hdr{dirE("usr/", 0o755), reg("usr/lib.so", strings.Repeat("base ", 30000), 0o644)}
	mid := []hdr{dirE("etc/", 0o755), reg("etc/conf", "x=1", 0o644), symlinkE("etc/link", "conf")}
	app1 := []hdr{dirE("app/", 0o755), reg("app/bin", strings.Repeat("v1 ", 20000), 0o755)}
	app2 := []hdr{dirE("app/", 0o755), reg("app/bin", strings.Repeat("v2 ", 20000), 0o755), reg("app/new", "new", 0o644)}
	push := func(repo string, img v1.Image) string {
		ref := host + "/src/" + repo + ":v1"
		r, _ := name.ParseReference(ref, name.Insecure)
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	v1src, v2img := push("one", stackImage(t, base, mid, app1)), stackImage(t, base, mid, app2)
	v2src := push("two", v2img)
	cacheRef := host + "/cache/nydus:build"
	opts := rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x10000}
	var logged bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&logged)
	convert := func(src, target string, o rafsbuild.Options, cache converter.BuildCache) *converter.Report {
		t.Helper()
		o.Logger = logger
		rep, err := converter.Convert(context.Background(), converter.Options{
			Source: src, Target: host + "/nydus/" + target, SourceRegistry: regOpts, TargetRegistry: regOpts,
			Build: o, BuildCache: cache,
		})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	caches := func(rep *converter.Report) string {
		var s []string
		for _, l := range rep.Platforms[0].Layers {
			s = append(s, l.Cache)
		}
		return strings.Join(s, ",")
	}
	cache := converter.BuildCache{Ref: cacheRef}

	if rep := convert(v1src, "one:v1", opts, cache); caches(rep) != "miss,miss,miss" || rep.BuildCache == nil || rep.BuildCache.Misses != 3 {
		t.Fatalf("cold conversion: layers %s, report %+v", caches(rep), rep.BuildCache)
	}
	logged.Reset()
	// ggcr logs each blob it mounts across repositories instead of uploading.
	var progress bytes.Buffer
	ggcrlogs.Progress = log.New(&progress, "", 0)
	warm := convert(v2src, "two:warm", opts, cache)
	ggcrlogs.Progress = log.New(io.Discard, "", 0)
	for _, l := range warm.Platforms[0].Layers[:2] {
		if !strings.Contains(progress.String(), "mounted blob: "+l.BlobDigest.String()) {
			t.Errorf("cached blob %s was not mounted into the target repository:\n%s", l.BlobDigest, progress.String())
		}
	}
	if caches(warm) != "hit,hit,miss" || warm.BuildCache.Hits != 2 || warm.BuildCache.Misses != 1 {
		t.Errorf("second conversion: layers %s, report %+v; want hits for the two unchanged layers", caches(warm), warm.BuildCache)
	}
	if n := strings.Count(logged.String(), "build cache hit"); n != 2 {
		t.Errorf("%d build cache hits logged:\n%s", n, logged.String())
	}
	cold := convert(v2src, "two:cold", opts, converter.BuildCache{})
	if warm.Digest != cold.Digest {
		t.Errorf("with the cache the target is %s, without it %s", warm.Digest, cold.Digest)
	}
	tref, _ := name.ParseReference(host+"/nydus/two:warm", name.Insecure)
	out, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	requireSame(t, fx.UmociUnpack(t, v2img), mountNydus(t, out))

	// The cache image as the registry serves it.
	cref, _ := name.ParseReference(cacheRef, name.Insecure)
	desc, err := remote.Get(cref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.OCIImageIndex {
		t.Fatalf("cache media type %s", desc.MediaType)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil {
		t.Fatalf("cache index %+v, want one manifest with its platform", im.Manifests)
	}
	cimg, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cimg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations[converter.AnnotationCacheVersion] != "v1" || len(m.Layers) != 4 {
		t.Fatalf("cache manifest annotations %v, %d records; want version v1 and 4 records", m.Annotations, len(m.Layers))
	}
	srcLayers, _ := v2img.Layers()
	for i, l := range srcLayers { // the last conversion's layers come first, in layer order
		d, _ := l.Digest()
		if got := m.Layers[i].Annotations["containerd.io/snapshot/nydus-source-digest"]; got != d.String() {
			t.Errorf("cache record %d is for %s, want %s", i, got, d)
		}
		if m.Layers[i].Digest != warm.Platforms[0].Layers[i].BlobDigest || m.Layers[i].Annotations[converter.AnnotationCacheKey] == "" {
			t.Errorf("cache record %d: %+v", i, m.Layers[i])
		}
	}

	// A record whose blob is not a layer blob (here the cache's config)
	// costs a conversion, not the conversion.
	broken := *m
	broken.Layers = slices.Clone(m.Layers)
	broken.Layers[0].Digest, broken.Layers[0].Size = m.Config.Digest, m.Config.Size
	brokenRef := putCache(t, cacheRef, broken, *im.Manifests[0].Platform)
	logged.Reset()
	if rep := convert(v2src, "two:broken", opts, converter.BuildCache{Ref: brokenRef}); caches(rep) != "miss,hit,hit" ||
		rep.Digest != cold.Digest || !strings.Contains(logged.String(), "converting the layer instead") {
		t.Errorf("broken record: layers %s, digest %s (want %s), log:\n%s", caches(rep), rep.Digest, cold.Digest, logged.String())
	}

	// Other options miss.
	if rep := convert(v2src, "two:lz4", rafsbuild.Options{Compressor: rafs.CompressLZ4Block, ChunkSize: 0x10000}, cache); caches(rep) != "miss,miss,miss" {
		t.Errorf("another compressor: layers %s", caches(rep))
	}
	// The zstd, 64 KiB records of the first runs are still there.
	if rep := convert(v2src, "two:again", opts, cache); caches(rep) != "hit,hit,hit" || rep.Digest != cold.Digest {
		t.Errorf("third run: layers %s, digest %s (want %s)", caches(rep), rep.Digest, cold.Digest)
	}
	capped := converter.BuildCache{Ref: cacheRef, MaxRecords: 5}
	if rep := convert(v2src, "two:chunk", rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x20000}, capped); caches(rep) != "miss,miss,miss" ||
		rep.BuildCache.Records != 5 {
		t.Errorf("another chunk size: layers %s, report %+v (want 5 records kept)", caches(rep), rep.BuildCache)
	}
}

// TestBuildCacheRefusals: settings that cannot work are refused before
// anything is read (the source does not exist).
func TestBuildCacheRefusals(t *testing.T) {
	for _, c := range []struct {
		cache      converter.BuildCache
		crossLayer bool
		want       string
	}{
		{converter.BuildCache{Ref: "localhost/c:x", Tag: "cache"}, false, "not both"},
		{converter.BuildCache{Ref: "localhost/c:x", MaxRecords: 201}, false, "give 1 to 200"},
		{converter.BuildCache{Tag: "cache"}, true, "exclude each other"},
	} {
		_, err := converter.Convert(context.Background(), converter.Options{
			Source: "oci:/nonexistent/source", Target: "localhost/t:x", BuildCache: c.cache, CrossLayerDedup: c.crossLayer,
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v, cross-layer dedup %v: %v, want an error saying %q", c.cache, c.crossLayer, err, c.want)
		}
	}
}

// putCache pushes a cache image of one manifest, m, next to cacheRef (whose
// repository holds m's blobs) and returns its reference.
func putCache(t *testing.T, cacheRef string, m v1.Manifest, p v1.Platform) string {
	t.Helper()
	ref, _ := name.ParseReference(cacheRef, name.Insecure)
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d, size, _ := v1.SHA256(bytes.NewReader(raw))
	if err := remote.Put(ref.Context().Digest(d.String()), rawDoc{raw, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex,
		Manifests: []v1.Descriptor{{MediaType: types.OCIManifestSchema1, Digest: d, Size: size, Platform: &p}}})
	if err != nil {
		t.Fatal(err)
	}
	tag := ref.Context().Tag("broken")
	if err := remote.Put(tag, rawDoc{idx, types.OCIImageIndex}); err != nil {
		t.Fatal(err)
	}
	return tag.String()
}

type rawDoc struct {
	raw []byte
	mt  types.MediaType
}

func (r rawDoc) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawDoc) MediaType() (types.MediaType, error) { return r.mt, nil }
