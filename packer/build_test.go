package packer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/internal/verify"
)

// Image takes the build's blobs, digests, sizes, blob.meta and bootstrap in one call: the
// blob layers carry the digests given, and the bootstrap layer holds the bootstrap and each
// blob.meta under the blob's digest, in blob order.
func TestImage(t *testing.T) {
	for _, oci := range []bool{true, false} {
		src := sourceImage(t, oci, v1.Platform{OS: "linux", Architecture: "amd64"})
		dir := t.TempDir()
		build := Build{Bootstrap: randomBytes(20000, 110)}
		for i, meta := range [][]byte{randomBytes(4096+80, 111), nil, randomBytes(8192+80, 112)} {
			b := blobOf(t, writeRandom(t, dir, "blob"+string(rune('0'+i)), 3000+i, uint64(120+i)))
			b.Meta = meta
			build.Blobs = append(build.Blobs, b)
		}
		work := t.TempDir()
		img, err := Image(src, build, Options{SourceRef: "example.com/app:v1", WorkDir: work})
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != len(build.Blobs)+1 {
			t.Fatalf("%d layers, want %d blobs and the bootstrap", len(layers), len(build.Blobs))
		}
		var blobLayers []v1.Layer
		for i, b := range build.Blobs {
			if d, _ := layers[i].Digest(); d != b.Digest {
				t.Errorf("layer %d: digest %s, want the build's %s", i, d, b.Digest)
			}
			blobLayers = append(blobLayers, layers[i])
		}
		boot := layers[len(layers)-1]
		checkNydusImage(t, img, src, blobLayers, boot, "example.com/app:v1")

		entries := readTar(t, readAll(t, boot.Uncompressed))
		want := []struct {
			name string
			body []byte
		}{
			{"image", nil}, // as packToTar names it
			{BootstrapName, build.Bootstrap},
			{"image/" + build.Blobs[0].Digest.Hex + ".blob.meta", build.Blobs[0].Meta},
			{"image/" + build.Blobs[2].Digest.Hex + ".blob.meta", build.Blobs[2].Meta},
		}
		if len(entries) != len(want) {
			t.Fatalf("bootstrap layer has %d entries, want %d", len(entries), len(want))
		}
		for i, w := range want {
			if entries[i].hdr.Name != w.name || !bytes.Equal(entries[i].body, w.body) {
				t.Errorf("bootstrap layer entry %d: %s (%d bytes), want %s (%d bytes)", i, entries[i].hdr.Name, len(entries[i].body), w.name, len(w.body))
			}
		}
		if files, _ := os.ReadDir(work); len(files) != 1 {
			t.Errorf("WorkDir holds %d files, want the bootstrap layer's gzip", len(files))
		}
	}
}

// Image trusts the digest the build reported and does not read the blob to make the image;
// reading the blob then checks it.
func TestImageTrustsBuildDigests(t *testing.T) {
	src := sourceImage(t, true, v1.Platform{OS: "linux", Architecture: "amd64"})
	dir := t.TempDir()
	b := blobOf(t, writeRandom(t, dir, "blob", 5000, 130))
	real := b.Digest
	b.Digest = hashOf([]byte("something else"))
	img, err := Image(src, Build{Blobs: []Blob{b}, Bootstrap: randomBytes(100, 131)}, Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if d, _ := layers[0].Digest(); d != b.Digest || d == real {
		t.Fatalf("blob layer digest %s, want the reported %s", d, b.Digest)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var verr *verify.Error
	if _, err := io.Copy(io.Discard, rc); !errors.As(err, &verr) {
		t.Fatalf("reading a blob that does not match the reported digest = %v, want a verify.Error", err)
	}
}

func TestImageErrors(t *testing.T) {
	src := sourceImage(t, true, v1.Platform{OS: "linux", Architecture: "amd64"})
	indexSrc := src
	indexSrc.Descriptor.MediaType = types.OCIImageIndex
	good := blobOf(t, writeRandom(t, t.TempDir(), "blob", 100, 140))
	bad := good
	bad.Digest.Hex = "xyz"
	work := t.TempDir()
	for _, tc := range []struct {
		name    string
		src     Source
		build   Build
		wantErr string
	}{
		{"index source", indexSrc, Build{Blobs: []Blob{good}}, "neither OCI nor docker schema 2"},
		{"bad digest", src, Build{Blobs: []Blob{good, bad}}, "blob 1: "},
	} {
		if _, err := Image(tc.src, tc.build, Options{WorkDir: work}); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
	if files, _ := os.ReadDir(work); len(files) != 0 {
		t.Errorf("failed calls left %d files in WorkDir", len(files))
	}
}
