package packer

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestCombine(t *testing.T) {
	for _, oci := range []bool{true, false} {
		platforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
		var images []Platformed
		for i, p := range platforms {
			src := sourceImage(t, oci, p)
			blobs, bootstrap := nydusParts(t, src, 1, uint64(30+10*i))
			img, err := assemble(src, blobs, bootstrap, Options{SourceRef: "src"})
			if err != nil {
				t.Fatal(err)
			}
			images = append(images, Platformed{Platform: p, Image: img})
		}

		one, err := Combine(images[:1])
		if err != nil || one != images[0].Image {
			t.Errorf("Combine of one image = %v, %v; want the image itself", one, err)
		}

		a, err := Combine(images)
		if err != nil {
			t.Fatal(err)
		}
		idx, ok := a.(v1.ImageIndex)
		if !ok {
			t.Fatalf("Combine of two images gave a %T", a)
		}
		wantType := types.OCIImageIndex
		if !oci {
			wantType = types.DockerManifestList
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := idx.RawManifest()
		if mt, _ := idx.MediaType(); mt != wantType || im.MediaType != wantType || im.SchemaVersion != 2 {
			t.Errorf("index %s (manifest says %s), want a %s", mt, im.MediaType, wantType)
		}
		if d, _ := idx.Digest(); d != hashOf(raw) {
			t.Errorf("index digest %s, raw hashes to %s", d, hashOf(raw))
		}
		if strings.Contains(string(raw), "artifactType") {
			t.Errorf("index entries carry an artifactType: %s", raw)
		}
		if len(im.Manifests) != len(images) {
			t.Fatalf("index lists %d manifests, want %d", len(im.Manifests), len(images))
		}
		for i, m := range im.Manifests {
			d, _ := images[i].Image.Digest()
			mt, _ := images[i].Image.MediaType()
			size, _ := images[i].Image.Size()
			if m.Digest != d || m.MediaType != mt || m.Size != size || m.Platform == nil || !m.Platform.Equals(platforms[i]) {
				t.Errorf("index entry %d: %+v, want %s %s %d %v", i, m, d, mt, size, platforms[i])
			}
			if img, err := idx.Image(d); err != nil || img != images[i].Image {
				t.Errorf("index entry %d does not open as its image: %v", i, err)
			}
		}
	}
}

func TestCombineErrors(t *testing.T) {
	amd := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	ociSrc, dockerSrc := sourceImage(t, true, amd), sourceImage(t, false, arm)
	blobs, bootstrap := nydusParts(t, ociSrc, 1, 95)
	ociImg, err := assemble(ociSrc, blobs, bootstrap, Options{SourceRef: "src"})
	if err != nil {
		t.Fatal(err)
	}
	blobs, bootstrap = nydusParts(t, dockerSrc, 1, 96)
	dockerImg, err := assemble(dockerSrc, blobs, bootstrap, Options{SourceRef: "src"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		images  []Platformed
		wantErr string
	}{
		{"no images", nil, "no images"},
		{"mixed families", []Platformed{{amd, ociImg}, {arm, dockerImg}}, "belongs in a application/vnd.oci.image.index.v1+json"},
		{"duplicate platform", []Platformed{{amd, ociImg}, {amd, ociImg}}, "platform linux/amd64 appears twice"},
		{"no platform", []Platformed{{amd, ociImg}, {v1.Platform{}, ociImg}}, "image 1 has no platform"},
	} {
		if _, err := Combine(tc.images); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
}
