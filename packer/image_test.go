package packer

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// sourceImage makes a source image for platform p with two layers and a config with
// history, an environment and an entrypoint.
func sourceImage(t *testing.T, oci bool, p v1.Platform) Source {
	t.Helper()
	layerType := types.DockerLayer
	if oci {
		layerType = types.OCILayer
	}
	img := empty.Image
	for i := range 2 {
		l, err := random.Layer(512, layerType)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "/bin/sh -c make && make install", Comment: string(rune('a' + i))}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Config.Env = []string{"PATH=/usr/bin", "A=<b>"}
	cfg.Config.Entrypoint = []string{"/bin/app"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	if oci {
		img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	desc.Platform = &p
	return Source{Image: img, Descriptor: *desc}
}

// nydusParts makes n blob layers and a bootstrap layer for src from files in a temp dir.
func nydusParts(t *testing.T, src Source, n int, seed uint64) (blobs []v1.Layer, bootstrap v1.Layer) {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		l, err := blobLayer(blobOf(t, writeRandom(t, dir, "blob"+string(rune('0'+i)), 2000+i, seed+uint64(i))))
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, l)
	}
	boot := randomBytes(8192, seed+100)
	meta := randomBytes(4096, seed+101)
	bootstrap, err := bootstrapLayer(boot, []namedFile{{name: "0.blob.meta", data: meta}}, BootstrapMediaType(src.Descriptor.MediaType), dir)
	if err != nil {
		t.Fatal(err)
	}
	return blobs, bootstrap
}

// checkNydusImage checks everything Image promises about img, built from src, blobs and
// bootstrap with sourceRef.
func checkNydusImage(t *testing.T, img v1.Image, src Source, blobs []v1.Layer, bootstrap v1.Layer, sourceRef string) {
	t.Helper()
	srcManifest, _ := src.Image.Manifest()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	if d, _ := img.Digest(); d != hashOf(raw) {
		t.Errorf("digest %s, manifest hashes to %s", d, hashOf(raw))
	}
	if mt, _ := img.MediaType(); m.MediaType != src.Descriptor.MediaType || mt != m.MediaType || m.SchemaVersion != 2 {
		t.Errorf("manifest media type %s (MediaType() %s), schema %d; want the source's %s", m.MediaType, mt, m.SchemaVersion, src.Descriptor.MediaType)
	}
	wantAnn := map[string]string{
		AnnotationSourceDigest:    src.Descriptor.Digest.String(),
		AnnotationSourceReference: sourceRef,
		AnnotationFSVersion:       "6",
	}
	if !reflect.DeepEqual(m.Annotations, wantAnn) {
		t.Errorf("manifest annotations %v, want %v", m.Annotations, wantAnn)
	}

	bootstrapType := types.DockerLayer
	if src.Descriptor.MediaType == types.OCIManifestSchema1 {
		bootstrapType = types.OCILayer
	}
	all := append(append([]v1.Layer{}, blobs...), bootstrap)
	if len(m.Layers) != len(all) {
		t.Fatalf("%d layers, want %d", len(m.Layers), len(all))
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var wantDiffIDs []v1.Hash
	for i, want := range all {
		d, _ := want.Digest()
		size, _ := want.Size()
		diffID, _ := want.DiffID()
		wantDiffIDs = append(wantDiffIDs, diffID)
		wantType, wantAnn := MediaTypeNydusBlob, map[string]string{AnnotationNydusBlob: "true"}
		if i == len(blobs) {
			wantType, wantAnn = bootstrapType, map[string]string{AnnotationNydusBootstrap: "true", AnnotationFSVersion: "6"}
		}
		got := m.Layers[i]
		if got.Digest != d || got.Size != size || got.MediaType != wantType || !reflect.DeepEqual(got.Annotations, wantAnn) {
			t.Errorf("layer %d: %+v, want %s %d %s %v", i, got, d, size, wantType, wantAnn)
		}
		if mt, _ := layers[i].MediaType(); mt != wantType {
			t.Errorf("layer %d: MediaType() %s, want %s", i, mt, wantType)
		}
		if gd, _ := layers[i].Digest(); gd != d || hashOf(readAll(t, layers[i].Compressed)) != d {
			t.Errorf("layer %d: content does not hash to %s", i, d)
		}
	}

	// Config: the source's, with diff_ids replaced and one history entry appended.
	if m.Config.MediaType != srcManifest.Config.MediaType {
		t.Errorf("config media type %s, want the source's %s", m.Config.MediaType, srcManifest.Config.MediaType)
	}
	rawCfg, _ := img.RawConfigFile()
	if m.Config.Digest != hashOf(rawCfg) || m.Config.Size != int64(len(rawCfg)) {
		t.Errorf("config descriptor %+v does not describe the config", m.Config)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	srcCfg, _ := src.Image.ConfigFile()
	if !reflect.DeepEqual(cfg.RootFS, v1.RootFS{Type: "layers", DiffIDs: wantDiffIDs}) {
		t.Errorf("rootfs %+v, want diff_ids %v", cfg.RootFS, wantDiffIDs)
	}
	wantHistory := append(append([]v1.History{}, srcCfg.History...), v1.History{CreatedBy: "Nydus Converter", Comment: "Nydus Bootstrap Layer"})
	if !reflect.DeepEqual(cfg.History, wantHistory) {
		t.Errorf("history %+v, want %+v", cfg.History, wantHistory)
	}
	cfg.RootFS, cfg.History = srcCfg.RootFS, srcCfg.History
	if !reflect.DeepEqual(cfg, srcCfg) {
		t.Errorf("config changed beyond rootfs and history:\n%+v\nwant\n%+v", cfg, srcCfg)
	}
}

func TestAssemble(t *testing.T) {
	for _, oci := range []bool{true, false} {
		src := sourceImage(t, oci, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
		for _, n := range []int{0, 1, 3} {
			blobs, bootstrap := nydusParts(t, src, n, uint64(10*n))
			img, err := assemble(src, blobs, bootstrap, Options{SourceRef: "registry.example.com/app:v1"})
			if err != nil {
				t.Fatal(err)
			}
			checkNydusImage(t, img, src, blobs, bootstrap, "registry.example.com/app:v1")
		}
	}
}

// With OCI, a docker source gives an image of OCI media types through and through, with the
// same layers, config content and source annotations.
func TestAssembleOCI(t *testing.T) {
	for _, oci := range []bool{false, true} {
		src := sourceImage(t, oci, v1.Platform{OS: "linux", Architecture: "amd64"})
		ociView := src
		ociView.Descriptor.MediaType = types.OCIManifestSchema1
		blobs, bootstrap := nydusParts(t, ociView, 2, 70)
		img, err := assemble(src, blobs, bootstrap, Options{SourceRef: "src", OCI: true})
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if mt, _ := img.MediaType(); mt != "application/vnd.oci.image.manifest.v1+json" || m.MediaType != mt ||
			m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
			t.Errorf("source oci=%v: manifest %s (%s), config %s; want OCI types", oci, m.MediaType, mt, m.Config.MediaType)
		}
		if got := m.Layers[len(m.Layers)-1].MediaType; got != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("source oci=%v: bootstrap layer %s", oci, got)
		}
		for _, l := range m.Layers[:len(m.Layers)-1] {
			if l.MediaType != MediaTypeNydusBlob {
				t.Errorf("source oci=%v: blob layer %s", oci, l.MediaType)
			}
		}
		if m.Annotations[AnnotationSourceDigest] != src.Descriptor.Digest.String() {
			t.Errorf("source oci=%v: source digest annotation %q, want %s", oci, m.Annotations[AnnotationSourceDigest], src.Descriptor.Digest)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		srcCfg, _ := src.Image.ConfigFile()
		if !reflect.DeepEqual(cfg.Config, srcCfg.Config) || cfg.OS != srcCfg.OS || cfg.Architecture != srcCfg.Architecture {
			t.Errorf("source oci=%v: runtime config changed: %+v, want %+v", oci, cfg.Config, srcCfg.Config)
		}
	}
}

// Config fields ggcr's ConfigFile does not know survive the rewrite.
func TestRewriteConfigKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"architecture":"amd64","os":"linux","moby.buildkit.buildinfo.v1":"eyJmb28iOiJiYXIifQ==",` +
		`"config":{"Labels":{"x":"a&b"}},"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("1", 64) + `"]}}`)
	d := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("2", 64)}
	out, err := rewriteConfig(raw, []v1.Hash{d}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"x":"a&b"`) {
		t.Errorf("rewriting escaped '&': %s", out)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"architecture":               "amd64",
		"os":                         "linux",
		"moby.buildkit.buildinfo.v1": "eyJmb28iOiJiYXIifQ==",
		"config":                     map[string]any{"Labels": map[string]any{"x": "a&b"}},
		"rootfs":                     map[string]any{"type": "layers", "diff_ids": []any{d.String()}},
		"history":                    []any{map[string]any{"created_by": "Nydus Converter", "comment": "Nydus Bootstrap Layer"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rewritten config\n%s\nwant %v", out, want)
	}
	for _, bad := range []string{`[]`, `null`, `{"history":{}}`, `not json`} {
		if _, err := rewriteConfig([]byte(bad), nil, false); err == nil {
			t.Errorf("rewriteConfig(%s) accepted", bad)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	src := sourceImage(t, true, v1.Platform{OS: "linux", Architecture: "amd64"})
	blobs, bootstrap := nydusParts(t, src, 1, 50)
	gzipLayer, err := random.Layer(100, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	indexSrc := src
	indexSrc.Descriptor.MediaType = types.OCIImageIndex
	dockerBootstrap, err := bootstrapLayer(randomBytes(10, 51), nil, types.DockerLayer, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		src       Source
		blobs     []v1.Layer
		bootstrap v1.Layer
		wantErr   string
	}{
		{"index source", indexSrc, blobs, bootstrap, "neither OCI nor docker schema 2"},
		{"blob not nydus", src, []v1.Layer{gzipLayer}, bootstrap, "blob 0: media type is"},
		{"bootstrap not gzip", src, blobs, blobs[0], "bootstrap layer: media type is"},
		{"bootstrap of the other family", src, blobs, dockerBootstrap, `bootstrap layer: media type is "application/vnd.docker.image.rootfs.diff.tar.gzip", want "application/vnd.oci.image.layer.v1.tar+gzip"`},
	} {
		if _, err := assemble(tc.src, tc.blobs, tc.bootstrap, Options{SourceRef: "x"}); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
}
