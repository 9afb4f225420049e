package archive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/verify"
)

// ggcr's tarball.Write stores layers as Compressed() returns them: here gzip, zstd and a
// plain tar, which OpenDocker must list with matching media types and unchanged digests.
func TestOpenDockerArchiveFromGGCR(t *testing.T) {
	img := fx.NewImage(t, fx.AMD64, false, fx.Gzip, fx.Uncompressed, fx.Zstd)
	file := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.WriteToFile(file, fx.MustRef(t, "example.com/app:v1"), img.Image); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "example.com/app:v1"} {
		desc, got, err := OpenDocker(file, name)
		if err != nil {
			t.Fatal(err)
		}
		if desc.MediaType != types.DockerManifestSchema2 {
			t.Fatalf("opened a %s, want a docker manifest", desc.MediaType)
		}
		raw, _ := got.RawManifest()
		if desc.Digest != fx.HashOf(raw) || desc.Size != int64(len(raw)) {
			t.Errorf("descriptor %+v, manifest hashes to %s", desc, fx.HashOf(raw))
		}
		if d, _ := partial.Descriptor(got); d == nil || d.Digest != desc.Digest {
			t.Errorf("image descriptor %+v, want %s", d, desc.Digest)
		}
		fx.CheckLayers(t, got, img)
	}
}

// writeTar writes a tar of the given entries in order.
func writeTar(t *testing.T, file string, entries []*tar.Header, bodies map[string][]byte) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(bodies[h.Name]))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(bodies[h.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// A "docker save" in the legacy layout: uncompressed layer.tar files, a duplicate layer stored
// as a symlink, "./" prefixes, and two images.
func TestOpenDockerArchiveLegacy(t *testing.T) {
	layer1 := fx.Tar(t, map[string]string{"bin/sh": "#!"})
	layer2 := fx.Tar(t, map[string]string{"etc/hosts": "127.0.0.1 localhost"})
	cfg := []byte(`{"architecture":"arm64","variant":"v8","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	manifest, _ := json.Marshal([]dockerManifestEntry{
		{Config: "cfg.json", RepoTags: []string{"example.com/app:v1"}, Layers: []string{"l1/layer.tar", "l2/layer.tar", "l3/layer.tar"}},
		{Config: "cfg.json", RepoTags: []string{"other:v2"}, Layers: []string{"l1/layer.tar"}},
	})
	file := filepath.Join(t.TempDir(), "save.tar")
	writeTar(t, file, []*tar.Header{
		{Name: "./l1/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./l1/layer.tar", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "./l2/layer.tar", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "./l3/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../l1/layer.tar"},
		{Name: "./cfg.json", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "./manifest.json", Typeflag: tar.TypeReg, Mode: 0o644},
	}, map[string][]byte{"./l1/layer.tar": layer1, "./l2/layer.tar": layer2, "./cfg.json": cfg, "./manifest.json": manifest})

	_, img, err := OpenDocker(file, "example.com/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := img.ConfigFile(); err != nil || !cfg.Platform().Equals(fx.ARM64) {
		t.Errorf("config platform %v (%v), want %v", cfg.Platform(), err, fx.ARM64)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := []v1.Descriptor{
		{MediaType: types.DockerUncompressedLayer, Size: int64(len(layer1)), Digest: fx.HashOf(layer1)},
		{MediaType: types.DockerUncompressedLayer, Size: int64(len(layer2)), Digest: fx.HashOf(layer2)},
		{MediaType: types.DockerUncompressedLayer, Size: int64(len(layer1)), Digest: fx.HashOf(layer1)},
	}
	if len(m.Layers) != len(want) {
		t.Fatalf("manifest has %d layers, want %d", len(m.Layers), len(want))
	}
	for i := range want {
		if m.Layers[i].MediaType != want[i].MediaType || m.Layers[i].Size != want[i].Size || m.Layers[i].Digest != want[i].Digest {
			t.Errorf("layer %d: %+v, want %+v", i, m.Layers[i], want[i])
		}
	}
	if m.Config.Digest != fx.HashOf(cfg) || m.Config.MediaType != types.DockerConfigJSON {
		t.Errorf("config descriptor %+v, want digest %s", m.Config, fx.HashOf(cfg))
	}
	layers, _ := img.Layers()
	if got := fx.ReadAll(t, layers[2]); string(got) != string(layer1) {
		t.Error("the symlinked layer does not read as its target")
	}

	for name, wantErr := range map[string]string{
		"":                                 `archive holds 2 images, name one of ["example.com/app:v1" "other:v2"]`,
		"other":                            "archive has no image named other",
		"index.docker.io/library/other:v2": "",
		"docker.io/library/other:v2":       "",
		"example.com/app:v2":               "no image named example.com/app:v2",
	} {
		_, _, err := OpenDocker(file, name)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("OpenDocker(name %q) = %v, want error containing %q", name, err, wantErr)
		}
	}
}

// Newer docker saves put layers under blobs/sha256/; their digests come from the path and
// are checked when the layer is read.
func TestOpenDockerArchiveBlobPaths(t *testing.T) {
	layer := fx.Compress(t, fx.Tar(t, map[string]string{"a": "b"}), fx.Gzip)
	good := "blobs/sha256/" + fx.HashOf(layer).Hex
	liar := "blobs/sha256/" + strings.Repeat("0", 64)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	manifest, _ := json.Marshal([]dockerManifestEntry{{Config: "blobs/sha256/" + fx.HashOf(cfg).Hex, Layers: []string{good, liar}}})
	file := filepath.Join(t.TempDir(), "save.tar")
	writeTar(t, file, []*tar.Header{
		{Name: good, Typeflag: tar.TypeReg},
		{Name: liar, Typeflag: tar.TypeReg},
		{Name: "blobs/sha256/" + fx.HashOf(cfg).Hex, Typeflag: tar.TypeReg},
		{Name: "manifest.json", Typeflag: tar.TypeReg},
	}, map[string][]byte{good: layer, liar: layer, "blobs/sha256/" + fx.HashOf(cfg).Hex: cfg, "manifest.json": manifest})

	_, img, err := OpenDocker(file, "")
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.DockerLayer {
		t.Errorf("gzip layer listed as %s", mt)
	}
	fx.ReadAll(t, layers[0])
	rc, err := layers[1].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var verr *verify.Error
	if _, err := io.Copy(io.Discard, rc); !errors.As(err, &verr) {
		t.Fatalf("reading a layer stored under the wrong digest = %v, want a verify.Error", err)
	}
}
