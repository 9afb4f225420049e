package layout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
)

// indexJSON reads a layout's index.json with ggcr.
func indexJSON(t *testing.T, dir string) *v1.IndexManifest {
	t.Helper()
	ii, err := ggcrlayout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func checkNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestWrite(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "new", "layout") // created by Write
	img := fx.NewImage(t, fx.AMD64, true, fx.Gzip, fx.Zstd)

	desc, err := Write(ctx, dir, "", img)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	if d, _ := img.Digest(); desc.Digest != d || desc.Size != int64(len(raw)) || desc.MediaType != types.OCIManifestSchema1 || desc.ArtifactType != "" {
		t.Errorf("Write returned %+v", desc)
	}
	im := indexJSON(t, dir)
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != desc.Digest || im.Manifests[0].Annotations[ocispec.AnnotationRefName] != DefaultTag {
		t.Fatalf("index.json %+v, want one entry %s named %q", im.Manifests, desc.Digest, DefaultTag)
	}
	// ggcr reads it.
	p, err := ggcrlayout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	fx.CheckLayers(t, got, img)
	// Our own reader agrees, tag and all.
	if back, _, err := Open(dir, DefaultTag); err != nil || back.Digest != desc.Digest {
		t.Fatalf("reopening: %+v, %v", back, err)
	}

	// A second image under another tag is added; under the same tag it replaces the first.
	img2 := fx.NewImage(t, fx.AMD64, true, fx.Uncompressed)
	desc2, err := Write(ctx, dir, "v2", img2)
	if err != nil {
		t.Fatal(err)
	}
	if im := indexJSON(t, dir); len(im.Manifests) != 2 {
		t.Fatalf("after adding v2: %d entries, want 2", len(im.Manifests))
	}
	if _, err := Write(ctx, dir, DefaultTag, img2); err != nil {
		t.Fatal(err)
	}
	im = indexJSON(t, dir)
	var names []string
	for _, m := range im.Manifests {
		names = append(names, m.Annotations[ocispec.AnnotationRefName])
		if m.Digest != desc2.Digest {
			t.Errorf("entry %q points at %s, want %s", names[len(names)-1], m.Digest, desc2.Digest)
		}
	}
	if !reflect.DeepEqual(names, []string{"v2", DefaultTag}) {
		t.Errorf("entries %q, want v2 then the replaced %s", names, DefaultTag)
	}
	checkNoTempFiles(t, dir)
}

func TestWriteIndex(t *testing.T) {
	for _, oci := range []bool{true, false} {
		dir := t.TempDir()
		ti := fx.NewIndex(t, oci)
		desc, err := Write(context.Background(), dir, "multi", ti.Index)
		if err != nil {
			t.Fatal(err)
		}
		wantType, _ := ti.Index.MediaType()
		if d, _ := ti.Index.Digest(); desc.Digest != d || desc.MediaType != wantType {
			t.Errorf("Write returned %+v, want %s %s", desc, d, wantType)
		}
		p, err := ggcrlayout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		top, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		child, err := top.ImageIndex(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := child.RawManifest()
		want, _ := ti.Index.RawManifest()
		if !bytes.Equal(got, want) {
			t.Errorf("stored index differs")
		}
		for _, w := range []fx.Image{ti.AMD64, ti.ARM64, ti.Attestation} {
			d, _ := w.Digest()
			img, err := child.Image(d)
			if err != nil {
				t.Fatal(err)
			}
			fx.CheckLayers(t, img, w)
		}
	}
}

// lyingLayer claims the digest of other bytes than it returns.
type lyingLayer struct{ claimed, actual []byte }

func (l lyingLayer) Digest() (v1.Hash, error)            { return fx.HashOf(l.claimed), nil }
func (l lyingLayer) Size() (int64, error)                { return int64(len(l.claimed)), nil }
func (l lyingLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
func (l lyingLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.actual)), nil
}

// A write that fails while writing blobs leaves index.json as it was, and no blob that
// failed verification in place.
func TestWriteFailureKeepsIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := fx.NewImage(t, fx.AMD64, true, fx.Gzip)
	if _, err := Write(ctx, dir, "v1", good); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}

	claimed := fx.Tar(t, map[string]string{"a": "claimed"})
	liar, err := partial.CompressedToLayer(lyingLayer{claimed: claimed, actual: fx.Tar(t, map[string]string{"a": "actual!"})})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := mutate.AppendLayers(good, liar)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"v1", "v2"} {
		_, err := Write(ctx, dir, tag, bad)
		if err == nil || !strings.Contains(err.Error(), "verify") {
			t.Fatalf("writing a lying layer as %s: %v, want a verification error", tag, err)
		}
		after, _ := os.ReadFile(filepath.Join(dir, "index.json"))
		if !bytes.Equal(after, before) {
			t.Fatalf("a failed write as %s changed index.json:\n%s", tag, after)
		}
		if _, err := os.Stat(filepath.Join(BlobDir(dir), fx.HashOf(claimed).Hex)); !os.IsNotExist(err) {
			t.Errorf("the unverified blob is in place: %v", err)
		}
	}
	checkNoTempFiles(t, dir)
}

func TestWriteCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := Write(ctx, dir, "v1", fx.NewImage(t, fx.AMD64, true, fx.Gzip)); !errors.Is(err, context.Canceled) {
		t.Errorf("writing with a cancelled context: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); !os.IsNotExist(err) {
		t.Errorf("a cancelled write wrote index.json: %v", err)
	}
}
