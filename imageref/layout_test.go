package imageref

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nydus-go/nydusify/internal/verify"
)

// writeLayout writes, with ggcr's layout package, an OCI layout holding the fixture index
// as "multi" and a single docker-typed image as "single".
func writeLayout(t *testing.T) (dir string, ti testIndex, single testImage) {
	t.Helper()
	dir = t.TempDir()
	ti = makeIndex(t, true)
	single = makeImage(t, amd64, false, gzipped, uncompressed)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(ti.index, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "multi"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(single, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "single"})); err != nil {
		t.Fatal(err)
	}
	return dir, ti, single
}

func TestOpenSourceOCILayoutAndArchive(t *testing.T) {
	dir, ti, single := writeLayout(t)
	archive := filepath.Join(t.TempDir(), "image.tar")
	tarDir(t, dir, archive)

	for _, kind := range []Kind{OCILayout, OCIArchive} {
		path := dir
		if kind == OCIArchive {
			path = archive
		}
		t.Run(kind.String(), func(t *testing.T) {
			ctx := context.Background()
			src, err := OpenSource(ctx, Ref{Kind: kind, Path: path, Name: "multi"}, RegistryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantDigest, _ := ti.index.Digest()
			if !src.IsIndex() || src.Digest() != wantDigest {
				t.Fatalf("multi: index=%v digest %s, want index %s", src.IsIndex(), src.Digest(), wantDigest)
			}
			imgs, skipped, err := src.Images(nil, true)
			if err != nil {
				t.Fatal(err)
			}
			checkImages(t, imgs, ti.amd64, ti.arm64)
			if len(skipped) != 1 {
				t.Errorf("skipped %d manifests, want the attestation", len(skipped))
			}

			src, err = OpenSource(ctx, Ref{Kind: kind, Path: path, Name: "single"}, RegistryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if src.IsIndex() {
				t.Fatal("single: opened as an index")
			}
			imgs, _, err = src.Images(nil, false)
			if err != nil {
				t.Fatal(err)
			}
			checkImages(t, imgs, single)
			if got := imgs[0].Descriptor.Annotations[ocispec.AnnotationRefName]; got != "single" {
				t.Errorf("descriptor annotations lost: ref name %q", got)
			}

			for name, wantErr := range map[string]string{
				"":      "2 matching entries, want a single image (names: \"multi\", \"single\")",
				"other": `0 matching entries, want one image named "other"`,
			} {
				_, err := OpenSource(ctx, Ref{Kind: kind, Path: path, Name: name}, RegistryOptions{})
				if err == nil || !strings.Contains(err.Error(), wantErr) {
					t.Errorf("OpenSource(name %q) = %v, want error containing %q", name, err, wantErr)
				}
			}
		})
	}
}

func TestOpenSourceOCILayoutSingleEntry(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, arm64, true, zstded)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil { // no ref name at all
		t.Fatal(err)
	}
	src, err := OpenSource(context.Background(), Ref{Kind: OCILayout, Path: dir}, RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	imgs, _, err := src.Images(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	checkImages(t, imgs, img)
}

// A layout blob changed after the manifest was written is caught while it streams.
func TestOpenSourceOCILayoutCorruptBlob(t *testing.T) {
	dir, _, single := writeLayout(t)
	layers, _ := single.Layers()
	d, _ := layers[1].Digest()
	blob := filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	writeFile(t, blob, b)

	src, err := OpenSource(context.Background(), Ref{Kind: OCILayout, Path: dir, Name: "single"}, RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	imgs, _, err := src.Images(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := imgs[0].Image.Layers()
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
	writeFile(t, filepath.Join(dir, "blobs", digest.Algorithm, digest.Hex), []byte("{}"))
	if _, err := OpenSource(context.Background(), Ref{Kind: OCILayout, Path: dir, Name: "single"}, RegistryOptions{}); !errors.As(err, &verr) {
		t.Fatalf("opening with a corrupt manifest = %v, want a verify.Error", err)
	}
}

func TestOpenSourceOCIArchiveErrors(t *testing.T) {
	dir, _, _ := writeLayout(t)
	tmp := t.TempDir()
	plain := filepath.Join(tmp, "image.tar")
	tarDir(t, dir, plain)
	raw, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	gz := filepath.Join(tmp, "image.tar.gz")
	writeFile(t, gz, compress(t, raw, gzipped))
	notTar := filepath.Join(tmp, "not.tar")
	writeFile(t, notTar, []byte("this is not a tar archive, just some text that is long enough to fill a header maybe"))

	for _, tc := range []struct {
		path, wantErr string
	}{
		{gz, "the archive is compressed; decompress it first"},
		{notTar, "reading tar headers"},
		{filepath.Join(tmp, "missing.tar"), "no such file"},
		{dir, "reading tar headers"}, // a directory is not an archive
	} {
		_, err := OpenSource(context.Background(), Ref{Kind: OCIArchive, Path: tc.path, Name: "single"}, RegistryOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "opening source oci-archive:") {
			t.Errorf("OpenSource(%s) = %v, want error containing %q", tc.path, err, tc.wantErr)
		}
	}
}
