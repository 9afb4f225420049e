package imageref

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/registry"
)

func TestOpenSourceOCILayoutAndArchive(t *testing.T) {
	dir, ti, single := fx.WriteLayout(t)
	archive := filepath.Join(t.TempDir(), "image.tar")
	fx.TarDir(t, dir, archive)

	for _, kind := range []Kind{OCILayout, OCIArchive} {
		path := dir
		if kind == OCIArchive {
			path = archive
		}
		t.Run(kind.String(), func(t *testing.T) {
			ctx := context.Background()
			src, err := OpenSource(ctx, Ref{Kind: kind, Path: path, Name: "multi"}, registry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			wantDigest, _ := ti.Index.Digest()
			if !src.IsIndex() || src.Digest() != wantDigest {
				t.Fatalf("multi: index=%v digest %s, want index %s", src.IsIndex(), src.Digest(), wantDigest)
			}
			imgs, skipped, err := src.Images(nil, true)
			if err != nil {
				t.Fatal(err)
			}
			checkImages(t, imgs, ti.AMD64, ti.ARM64)
			if len(skipped) != 1 {
				t.Errorf("skipped %d manifests, want the attestation", len(skipped))
			}

			src, err = OpenSource(ctx, Ref{Kind: kind, Path: path, Name: "single"}, registry.Options{})
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
				_, err := OpenSource(ctx, Ref{Kind: kind, Path: path, Name: name}, registry.Options{})
				if err == nil || !strings.Contains(err.Error(), wantErr) {
					t.Errorf("OpenSource(name %q) = %v, want error containing %q", name, err, wantErr)
				}
			}
		})
	}
}
