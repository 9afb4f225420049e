package archive

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
)

// An OCI archive reads as the layout it was made from: the same index, image, annotations
// and layer bytes.
func TestOpenOCI(t *testing.T) {
	dir, ti, single := fx.WriteLayout(t)
	file := filepath.Join(t.TempDir(), "image.tar")
	fx.TarDir(t, dir, file)

	desc, a, err := OpenOCI(file, "multi")
	if err != nil {
		t.Fatal(err)
	}
	idx, ok := a.(v1.ImageIndex)
	wantDigest, _ := ti.Index.Digest()
	if !ok || desc.Digest != wantDigest {
		t.Fatalf("multi: %T %s, want index %s", a, desc.Digest, wantDigest)
	}
	got, _ := idx.RawManifest()
	want, _ := ti.Index.RawManifest()
	if !bytes.Equal(got, want) {
		t.Errorf("index differs")
	}
	armDigest, _ := ti.ARM64.Digest()
	arm, err := idx.Image(armDigest)
	if err != nil {
		t.Fatal(err)
	}
	fx.CheckLayers(t, arm, ti.ARM64)

	desc, a, err = OpenOCI(file, "single")
	if err != nil {
		t.Fatal(err)
	}
	img, ok := a.(v1.Image)
	if !ok || desc.Annotations[ocispec.AnnotationRefName] != "single" {
		t.Fatalf("single: %T with annotations %v", a, desc.Annotations)
	}
	fx.CheckLayers(t, img, single)
}

func TestOpenOCIErrors(t *testing.T) {
	dir, _, _ := fx.WriteLayout(t)
	tmp := t.TempDir()
	plain := filepath.Join(tmp, "image.tar")
	fx.TarDir(t, dir, plain)
	raw, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	gz := filepath.Join(tmp, "image.tar.gz")
	fx.WriteFile(t, gz, fx.Compress(t, raw, fx.Gzip))
	notTar := filepath.Join(tmp, "not.tar")
	fx.WriteFile(t, notTar, []byte("this is not a tar archive, just some text that is long enough to fill a header maybe"))

	for _, tc := range []struct {
		path, wantErr string
	}{
		{gz, "the archive is compressed; decompress it first"},
		{notTar, "reading tar headers"},
		{filepath.Join(tmp, "missing.tar"), "no such file"},
		{dir, "reading tar headers"}, // a directory is not an archive
	} {
		_, _, err := OpenOCI(tc.path, "single")
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("OpenOCI(%s) = %v, want error containing %q", tc.path, err, tc.wantErr)
		}
	}
}
