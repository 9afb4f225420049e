package converter_test

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/converter"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// TestConvertV5 converts the three-layer source image (whiteouts, an opaque
// directory, hardlinks, xattrs, devices, type changes) as RAFS v5 through a
// real registry (Debian's docker-registry): the manifest and bootstrap layer
// say fs version 5, the image mounted lazily from the registry over FUSE
// equals umoci's flattening of the source, and check (which recomputes the
// v5 Merkle tree) finds no problem.
func TestConvertV5(t *testing.T) {
	testenv.RequireFUSE(t)
	host := testenv.StartRegistry(t)
	srcRef, _ := name.ParseReference(host+"/src/v5:v1", name.Insecure)
	if err := remote.Write(srcRef, sourceImage(t, true, true)); err != nil {
		t.Fatal(err)
	}
	target := host + "/nydus/v5:v1"
	reg := registry.Options{PlainHTTP: true}
	if _, err := converter.Convert(context.Background(), converter.Options{
		Source: srcRef.String(), Target: target, SourceRegistry: reg, TargetRegistry: reg,
		Build: rafsbuild.Options{FsVersion: 5, Compressor: rafs.CompressZstd},
	}); err != nil {
		t.Fatal(err)
	}
	tref, _ := name.ParseReference(target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Annotations["containerd.io/snapshot/nydus-fs-version"]; v != "5" {
		t.Errorf("manifest fs version %q", v)
	}
	if v := m.Layers[len(m.Layers)-1].Annotations["containerd.io/snapshot/nydus-fs-version"]; v != "5" {
		t.Errorf("bootstrap layer fs version %q", v)
	}
	requireSame(t, fx.UmociUnpack(t, sourceImage(t, true, false)), mountTarget(t, target, nil))

	rep, err := checker.Check(context.Background(), checker.Options{
		Target: target, Source: srcRef.String(), SourceRegistry: reg, TargetRegistry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Errorf("check: %v", rep.Problems)
	}
}
