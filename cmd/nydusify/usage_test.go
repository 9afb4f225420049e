package main

import (
	"archive/tar"
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// platformImage returns a one-layer image (manifest and layer media types of the docker
// family, or OCI) whose config declares linux/<arch>.
func platformImage(t *testing.T, arch string, docker bool) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "arch", Mode: 0o644, Size: int64(len(arch)), Typeflag: tar.TypeReg})
	tw.Write([]byte(arch))
	tw.Close()
	mt, cmt, lmt := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCIUncompressedLayer
	if docker {
		mt, cmt, lmt = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerUncompressedLayer
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), cmt), static.NewLayer(buf.Bytes(), lmt))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes img into a new OCI layout directory under tag and returns its
// "oci:DIR:TAG" reference.
func writeLayout(t *testing.T, dir, tag string, img v1.Image) string {
	t.Helper()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":" + tag
}

// wantFailure requires r to have failed with every one of wants in its stderr, and
// without a panic.
func wantFailure(t *testing.T, what string, r result, wants ...string) {
	t.Helper()
	if r.code == 0 || strings.Contains(r.stderr, "panic") {
		t.Errorf("%s: exit %d, stderr %q; want a failure", what, r.code, r.stderr)
		return
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("%s: stderr %q, want it to contain %q", what, r.stderr, w)
		}
	}
}

// TestPlatformOfSingleManifest: a platform a single-platform image is not is an error
// naming the platform it is, for convert, check and mount alike; its own platform, or
// none (the host default), converts it.
func TestPlatformOfSingleManifest(t *testing.T) {
	dir := t.TempDir()
	src := writeLayout(t, filepath.Join(dir, "src"), "v1", platformImage(t, "amd64", false))
	dst := "oci:" + filepath.Join(dir, "dst") + ":v1"

	r := run(t, nil, "convert", "--source", src, "--target", dst, "--platform", "linux/arm64")
	wantFailure(t, "convert --platform linux/arm64", r, "single-platform image for linux/amd64", "no manifest for linux/arm64")
	if r := run(t, nil, "convert", "--source", src, "--target", dst, "--platform", "linux/amd64"); r.code != 0 {
		t.Fatalf("convert --platform linux/amd64: %s", r.stderr)
	}

	r = run(t, nil, "check", "--target", dst, "--source", src, "--platform", "linux/arm64")
	wantFailure(t, "check --platform linux/arm64", r, "target: ", "single-platform image for linux/amd64", "no manifest for linux/arm64")
	if strings.Contains(r.stderr, "source") {
		t.Errorf("check names the target a source: %q", r.stderr)
	}
	if r := run(t, nil, "check", "--target", dst, "--source", src, "--platform", "linux/amd64"); r.code != 0 {
		t.Errorf("check --platform linux/amd64: %s", r.stderr)
	}

	r = run(t, nil, "mount", "--target", dst, "--mount-path", t.TempDir(), "--platform", "linux/arm64")
	wantFailure(t, "mount --platform linux/arm64", r, "target: ", "single-platform image for linux/amd64", "no manifest for linux/arm64")
	if strings.Contains(r.stderr, "source") {
		t.Errorf("mount names the target a source: %q", r.stderr)
	}
}
