package layout

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/verify"
)

func TestOpenSingleEntry(t *testing.T) {
	dir := t.TempDir()
	img := fx.NewImage(t, fx.ARM64, true, fx.Zstd)
	p, err := ggcrlayout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil { // no ref name at all
		t.Fatal(err)
	}
	desc, a, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := a.(v1.Image)
	if wantDigest, _ := img.Digest(); !ok || desc.Digest != wantDigest {
		t.Fatalf("opened %T %s, want image %s", a, desc.Digest, wantDigest)
	}
	fx.CheckLayers(t, got, img)
}

// A layout blob changed after the manifest was written is caught while it streams.
func TestOpenCorruptBlob(t *testing.T) {
	dir, _, single := fx.WriteLayout(t)
	layers, _ := single.Layers()
	d, _ := layers[1].Digest()
	blob := filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	fx.WriteFile(t, blob, b)

	_, a, err := Open(dir, "single")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := a.(v1.Image).Layers()
	rc, err := got[1].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	var verr *verify.Error
	if !errors.As(err, &verr) || verr.Want.String() != d.String() {
		t.Fatalf("reading a corrupt blob = %v, want a verify.Error for %s", err, d)
	}

	// A corrupt manifest is refused when opening.
	digest, _ := single.Digest()
	fx.WriteFile(t, filepath.Join(dir, "blobs", digest.Algorithm, digest.Hex), []byte("{}"))
	if _, _, err := Open(dir, "single"); !errors.As(err, &verr) {
		t.Fatalf("opening with a corrupt manifest = %v, want a verify.Error", err)
	}
}
