package imageref

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
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Fixtures for the tests: small tar layers made here, images and indexes built from them
// with ggcr, and an in-process registry.

type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
)

// tarOf returns an uncompressed tar holding one file per name, with content from contents.
func tarOf(t *testing.T, files map[string]string) []byte {
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

func compress(t *testing.T, raw []byte, c compression) []byte {
	t.Helper()
	var b bytes.Buffer
	switch c {
	case uncompressed:
		return raw
	case gzipped:
		zw := gzip.NewWriter(&b)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	case zstded:
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

func (l bytesLayer) Digest() (v1.Hash, error)            { return hashOf(l.b), nil }
func (l bytesLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l bytesLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}

func hashOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// layerMediaType returns the media type of a layer compressed with c, in the OCI or docker family.
func layerMediaType(c compression, oci bool) types.MediaType {
	switch {
	case c == zstded:
		return types.OCILayerZStd
	case c == gzipped && oci:
		return types.OCILayer
	case c == gzipped:
		return types.DockerLayer
	case oci:
		return types.OCIUncompressedLayer
	}
	return types.DockerUncompressedLayer
}

// testImage is a fixture image with the tars its layers hold.
type testImage struct {
	v1.Image
	tars [][]byte
}

// makeImage builds an image for platform p with one layer per compression, each holding a
// file naming the platform and the layer.
func makeImage(t *testing.T, p v1.Platform, oci bool, cs ...compression) testImage {
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
		raw := tarOf(t, map[string]string{
			"etc/platform":                 p.String(),
			"layer/" + string(rune('a'+i)): strings.Repeat("x", 100*i),
		})
		tars = append(tars, raw)
		l, err := partial.CompressedToLayer(bytesLayer{b: compress(t, raw, c), mt: layerMediaType(c, oci)})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: layerMediaType(c, oci)}); err != nil {
			t.Fatal(err)
		}
	}
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	return testImage{Image: img, tars: tars}
}

var (
	amd64       = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64       = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	attestation = v1.Platform{OS: "unknown", Architecture: "unknown"}
)

// testIndex is an index (OCI, or a docker manifest list) of a linux/amd64 image (gzip, zstd
// and uncompressed layers), a linux/arm64/v8 image, and a buildkit-style attestation
// manifest for the amd64 one.
type testIndex struct {
	index                     v1.ImageIndex
	amd64, arm64, attestation testImage
}

func makeIndex(t *testing.T, oci bool) testIndex {
	t.Helper()
	ti := testIndex{
		amd64:       makeImage(t, amd64, oci, gzipped, zstded, uncompressed),
		arm64:       makeImage(t, arm64, oci, gzipped),
		attestation: makeImage(t, attestation, oci, uncompressed),
	}
	var base v1.ImageIndex = empty.Index
	if !oci {
		base = mutate.IndexMediaType(base, types.DockerManifestList)
	}
	amdDigest, err := ti.amd64.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ti.index = mutate.AppendManifests(base,
		mutate.IndexAddendum{Add: ti.amd64, Descriptor: v1.Descriptor{Platform: &amd64}},
		mutate.IndexAddendum{Add: ti.arm64, Descriptor: v1.Descriptor{Platform: &arm64}},
		mutate.IndexAddendum{Add: ti.attestation, Descriptor: v1.Descriptor{
			Platform: &attestation,
			Annotations: map[string]string{
				"vnd.docker.reference.type":   "attestation-manifest",
				"vnd.docker.reference.digest": amdDigest.String(),
			},
		}},
	)
	return ti
}

// startRegistry serves an in-process registry, through wrap if not nil, and returns its
// host:port.
func startRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// readAll reads a layer's uncompressed content.
func readAll(t *testing.T, l v1.Layer) []byte {
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

// tarDir writes a tar of the directory tree at dir to file, as an oci-archive holds it.
func tarDir(t *testing.T, dir, file string) {
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

// writeFile writes a file under dir, creating parents.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
