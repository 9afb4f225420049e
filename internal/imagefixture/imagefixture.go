// Package imagefixture makes the images the image-place tests read and write: small tar
// layers made in code (plain, gzip or zstd), images and indexes built from them with
// go-containerregistry, and an in-process registry. Every helper takes a testing.TB and
// fails the test on error. It is for tests only and knows nothing of Nydus.
package imagefixture

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nydus-go/nydusify/internal/testenv"
)

// Compression is how a fixture layer is stored.
type Compression int

const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

// Platforms of the fixture images.
var (
	AMD64       = v1.Platform{OS: "linux", Architecture: "amd64"}
	ARM64       = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	Attestation = v1.Platform{OS: "unknown", Architecture: "unknown"}
)

// Tar returns an uncompressed tar holding one regular file per name, in name order.
func Tar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Compress returns raw compressed with c.
func Compress(t testing.TB, raw []byte, c Compression) []byte {
	t.Helper()
	var b bytes.Buffer
	switch c {
	case Uncompressed:
		return raw
	case Gzip:
		zw := gzip.NewWriter(&b)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	case Zstd:
		zw, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// bytesLayer is a layer over bytes as stored (compressed or not); partial derives the rest.
type bytesLayer struct {
	b  []byte
	mt types.MediaType
}

func (l bytesLayer) Digest() (v1.Hash, error)            { return HashOf(l.b), nil }
func (l bytesLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l bytesLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}

// HashOf returns the sha256 digest of b.
func HashOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// LayerMediaType returns the media type of a layer compressed with c, in the OCI or docker family.
func LayerMediaType(c Compression, oci bool) types.MediaType {
	switch {
	case c == Zstd:
		return types.OCILayerZStd
	case c == Gzip && oci:
		return types.OCILayer
	case c == Gzip:
		return types.DockerLayer
	case oci:
		return types.OCIUncompressedLayer
	}
	return types.DockerUncompressedLayer
}

// Image is a fixture image with the tars its layers hold.
type Image struct {
	v1.Image
	Tars [][]byte
}

// NewImage builds an image for platform p with one layer per compression, each holding a
// file naming the platform and the layer. oci chooses OCI media types over docker ones.
func NewImage(t testing.TB, p v1.Platform, oci bool, cs ...Compression) Image {
	t.Helper()
	cfg := &v1.ConfigFile{
		OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh", "-c", "true && echo <ok>"}},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tars [][]byte
	for i, c := range cs {
		raw := Tar(t, map[string]string{
			"etc/platform":                 p.String(),
			"layer/" + string(rune('a'+i)): strings.Repeat("x", 100*i),
		})
		tars = append(tars, raw)
		l, err := partial.CompressedToLayer(bytesLayer{b: Compress(t, raw, c), mt: LayerMediaType(c, oci)})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: LayerMediaType(c, oci)}); err != nil {
			t.Fatal(err)
		}
	}
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	return Image{Image: img, Tars: tars}
}

// Index is an index (OCI, or a docker manifest list) of a linux/amd64 image (gzip, zstd
// and uncompressed layers), a linux/arm64/v8 image, and a buildkit-style attestation
// manifest for the amd64 one.
type Index struct {
	Index                     v1.ImageIndex
	AMD64, ARM64, Attestation Image
}

// NewIndex builds the fixture Index; oci chooses OCI media types over docker ones.
func NewIndex(t testing.TB, oci bool) Index {
	t.Helper()
	ti := Index{
		AMD64:       NewImage(t, AMD64, oci, Gzip, Zstd, Uncompressed),
		ARM64:       NewImage(t, ARM64, oci, Gzip),
		Attestation: NewImage(t, Attestation, oci, Uncompressed),
	}
	var base v1.ImageIndex = empty.Index
	if !oci {
		base = mutate.IndexMediaType(base, types.DockerManifestList)
	}
	amdDigest, err := ti.AMD64.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ti.Index = mutate.AppendManifests(base,
		mutate.IndexAddendum{Add: ti.AMD64, Descriptor: v1.Descriptor{Platform: &AMD64}},
		mutate.IndexAddendum{Add: ti.ARM64, Descriptor: v1.Descriptor{Platform: &ARM64}},
		mutate.IndexAddendum{Add: ti.Attestation, Descriptor: v1.Descriptor{
			Platform: &Attestation,
			Annotations: map[string]string{
				"vnd.docker.reference.type":   "attestation-manifest",
				"vnd.docker.reference.digest": amdDigest.String(),
			},
		}},
	)
	return ti
}

// StartRegistry serves ggcr's in-process registry, through wrap if not nil, until the test
// ends, and returns its host:port.
func StartRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// ReadAll reads a layer's uncompressed content.
func ReadAll(t testing.TB, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TarDir writes a tar of the directory tree at dir to file, as an oci-archive holds it.
func TarDir(t testing.TB, dir, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// WriteFile writes a file, creating its parent directories.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// MustRef parses a registry reference.
func MustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// CheckLayers compares the digests, media types and uncompressed content of img's layers,
// and its config, with want's.
func CheckLayers(t testing.TB, img v1.Image, want Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wantLayers, _ := want.Layers()
	if len(layers) != len(want.Tars) {
		t.Fatalf("%d layers, want %d", len(layers), len(want.Tars))
	}
	for j, l := range layers {
		d, _ := l.Digest()
		wd, _ := wantLayers[j].Digest()
		mt, _ := l.MediaType()
		wmt, _ := wantLayers[j].MediaType()
		if d != wd || mt != wmt {
			t.Errorf("layer %d: %s %s, want %s %s", j, d, mt, wd, wmt)
		}
		if got := ReadAll(t, l); !bytes.Equal(got, want.Tars[j]) {
			t.Errorf("layer %d: uncompressed content differs from the tar written", j)
		}
	}
	cfg, _ := img.RawConfigFile()
	wantCfg, _ := want.RawConfigFile()
	if !bytes.Equal(cfg, wantCfg) {
		t.Errorf("config differs:\n%s\nwant\n%s", cfg, wantCfg)
	}
}

// WriteLayout writes, with ggcr's layout package, an OCI layout holding the fixture index
// (OCI media types) as "multi" and a single image with docker media types (gzip and
// uncompressed layers) as "single", and returns its directory and both.
func WriteLayout(t testing.TB) (dir string, index Index, single Image) {
	t.Helper()
	dir = t.TempDir()
	index = NewIndex(t, true)
	single = NewImage(t, AMD64, false, Gzip, Uncompressed)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(index.Index, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "multi"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(single, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "single"})); err != nil {
		t.Fatal(err)
	}
	return dir, index, single
}

// UmociUnpack flattens img with umoci (`umoci raw unpack`), the independent
// judge of what an image's filesystem is, and returns the rootfs directory.
func UmociUnpack(t testing.TB, img v1.Image) string {
	t.Helper()
	umoci := testenv.RequireTool(t, "umoci")
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "src"})); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if out, err := exec.Command(umoci, "raw", "unpack", "--image", filepath.Join(dir, "layout")+":src", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("umoci raw unpack: %v\n%s", err, out)
	}
	return rootfs
}
