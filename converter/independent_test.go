package converter_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nydus-go/nydusify/converter"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// TestLayerBlobsIndependent: by default a layer converts to the same blob
// whatever lies below it. The same app layer on two bases, the first of which
// stores some of the app's chunks, gets one blob digest in both manifests
// (as the registry serves them); with CrossLayerDedup it gets two, which
// shows the test can tell. A stack holding the same layer twice (so the same
// blob twice) converts to one blob layer, and the kernel mount of each
// result equals umoci's unpack of its source.
func TestLayerBlobsIndependent(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	host := testenv.StartRegistry(t)
	shared := strings.Repeat("shared chunk data ", 80000) // 1.4 MB, several 64 KiB chunks
	base1 := []hdr{dirE("usr/", 0o755), reg("usr/lib.so", shared, 0o644)}
	base2 := []hdr{dirE("usr/", 0o755), reg("usr/other.so", "another base", 0o644)}
	app := []hdr{dirE("app/", 0o755), reg("app/bin", shared+"app", 0o755), reg("app/conf", "x=1", 0o644)}
	reg := registry.Options{PlainHTTP: true}

	convert := func(repo string, img v1.Image, crossLayer bool) (*converter.Report, v1.Image) {
		t.Helper()
		src := host + "/src/" + repo + ":v1"
		ref, _ := name.ParseReference(src, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		target := host + "/nydus/" + repo + ":v1"
		rep, err := converter.Convert(context.Background(), converter.Options{
			Source: src, Target: target, SourceRegistry: reg, TargetRegistry: reg, CrossLayerDedup: crossLayer,
			Build: rafsbuild.Options{Compressor: rafs.CompressZstd, ChunkSize: 0x10000},
		})
		if err != nil {
			t.Fatal(err)
		}
		tref, _ := name.ParseReference(target, name.Insecure)
		out, err := remote.Image(tref)
		if err != nil {
			t.Fatal(err)
		}
		return rep, out
	}
	// appBlob is the digest of the manifest's second layer, the app's blob.
	appBlob := func(img v1.Image) v1.Hash {
		t.Helper()
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Layers) != 3 {
			t.Fatalf("%d layers in the Nydus manifest, want 2 blobs and the bootstrap", len(m.Layers))
		}
		return m.Layers[1].Digest
	}

	src1, src2 := stackImage(t, base1, app), stackImage(t, base2, app)
	rep1, img1 := convert("one", src1, false)
	_, img2 := convert("two", src2, false)
	if a, b := appBlob(img1), appBlob(img2); a != b {
		t.Errorf("the app layer converted to %s over one base and %s over another", a, b)
	}
	if d := rep1.Platforms[0].Layers[1].DictChunks; d != 0 {
		t.Errorf("%d chunks of the app layer were left to the base layer by default", d)
	}
	requireSame(t, fx.UmociUnpack(t, src1), mountNydus(t, img1))
	requireSame(t, fx.UmociUnpack(t, src2), mountNydus(t, img2))

	rep3, img3 := convert("three", src1, true)
	_, img4 := convert("four", src2, true)
	if a, b := appBlob(img3), appBlob(img4); a == b || rep3.Platforms[0].Layers[1].DictChunks == 0 {
		t.Errorf("with cross-layer dedup the app blob is %s and %s (%d chunks left to the base): the test cannot tell",
			a, b, rep3.Platforms[0].Layers[1].DictChunks)
	}
	requireSame(t, fx.UmociUnpack(t, src1), mountNydus(t, img3))

	srcTwin := stackImage(t, app, base2, app)
	repTwin, imgTwin := convert("twin", srcTwin, false)
	if l := repTwin.Platforms[0].Layers; l[0].BlobDigest != l[2].BlobDigest {
		t.Fatalf("the same layer made blobs %s and %s; the case is not tested", l[0].BlobDigest, l[2].BlobDigest)
	}
	if m, err := imgTwin.Manifest(); err != nil || len(m.Layers) != 3 {
		t.Errorf("the same layer twice: want 2 blob layers and the bootstrap in the manifest (%v)", err)
	}
	requireSame(t, fx.UmociUnpack(t, srcTwin), mountNydus(t, imgTwin))
}
