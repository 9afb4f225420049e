package checker_test

import (
	"archive/tar"
	"context"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestCheckSymlinkParent: a runtime writes a/passwd through the symlink
// a -> /etc. A Nydus image made by path only (a turned into a directory
// holding passwd, /etc/passwd untouched) must fail the filesystem rule at
// those paths; the converter's image of the same source must pass.
func TestCheckSymlinkParent(t *testing.T) {
	dir := t.TempDir()
	lower := []entry{{name: "etc/", typ: tar.TypeDir, mode: 0o755}, reg("etc/passwd", "root:x:0:0", 0o644),
		{name: "a", link: "/etc", typ: tar.TypeSymlink, mode: 0o777}}
	source := ociImage(t, dir, "source", layerOf(t, lower...), layerOf(t, reg("a/passwd", "intruder", 0o644)))
	// What a path-only converter makes of source, as the image of a source
	// that says so: the same lower layer, then a directory a (mode 0755,
	// mtime 0, as an implied parent) holding passwd.
	pathOnly := ociImage(t, dir, "path-only", layerOf(t, lower...),
		layerOf(t, entry{name: "a/", typ: tar.TypeDir, mode: 0o755, mtime: -1700000000}, reg("a/passwd", "intruder", 0o644)))

	for _, tc := range []struct {
		name, src string
		want      map[string]string // path → field the check must report
	}{
		{"converted", source, nil},
		{"path-only", pathOnly, map[string]string{"/a": "type", "/a/passwd": "presence", "/etc/passwd": "size"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "oci:" + filepath.Join(dir, "nydus-"+tc.name) + ":app"
			if _, err := converter.Convert(context.Background(), converter.Options{
				Source: tc.src, Target: target, Build: rafsbuild.Options{Compressor: rafs.CompressZstd},
			}); err != nil {
				t.Fatal(err)
			}
			rep, err := checker.Check(context.Background(), checker.Options{Target: target, Source: source, WorkDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, p := range rep.Problems {
				if p.Rule == checker.RuleFilesystem {
					got[p.Path] = p.Field
				} else if tc.want == nil {
					t.Errorf("unexpected problem: %s", p)
				}
			}
			for p, field := range tc.want {
				if got[p] != field {
					t.Errorf("check reports %v; want %s at %s", rep.Problems, field, p)
				}
			}
			if tc.want == nil && (!rep.OK || len(got) > 0) {
				t.Errorf("check of the converted image: %v", rep.Problems)
			}
			if tc.want != nil && rep.OK {
				t.Error("check passes a path-only image")
			}
		})
	}
}

// ociImage writes an OCI image of layers into the layout dir/name, tagged
// app, and returns its reference.
func ociImage(t *testing.T, dir, name string, layers ...v1.Layer) string {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, name), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "app"})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + filepath.Join(dir, name) + ":app"
}
