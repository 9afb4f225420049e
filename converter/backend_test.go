package converter_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/imagemount"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// TestConvertToLocalFS converts the three-layer source into a real registry
// with its blobs in a localfs backend: the registry image has only the
// bootstrap layer (one diff_id), the directory holds one file per blob of
// the bootstrap's blob table, each hashing to its name; a second conversion
// sends nothing; a FUSE mount of the image with the localfs backend equals
// umoci's unpacking of the source; check with the backend passes, and
// without it fails. copy with the backend as its source gives a
// self-contained image that check passes and that mounts from the registry
// alone.
func TestConvertToLocalFS(t *testing.T) {
	testenv.RequireFUSE(t)
	host := testenv.StartRegistry(t)
	srcRef, _ := name.ParseReference(host+"/src/localfs:v1", name.Insecure)
	if err := remote.Write(srcRef, sourceImage(t, true, true)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "blobs")
	target := host + "/nydus/localfs:v1"
	reg := registry.Options{PlainHTTP: true}
	opts := converter.Options{
		Source: srcRef.String(), Target: target, Build: rafsbuild.Options{},
		SourceRegistry: reg, TargetRegistry: reg, Backend: backend.NewLocalFS(dir),
	}
	rep, err := converter.Convert(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	tref, _ := name.ParseReference(target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	cf, _ := img.ConfigFile()
	if len(m.Layers) != 1 || m.Layers[0].Annotations[packer.AnnotationNydusBootstrap] != "true" || len(cf.RootFS.DiffIDs) != 1 || len(cf.History) != 1 {
		t.Fatalf("manifest layers %v, diff_ids %v, history %v: want the bootstrap layer alone", m.Layers, cf.RootFS.DiffIDs, cf.History)
	}
	blobs := rep.Platforms[0].Blobs
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob file %s does not hash to its name", e.Name())
		}
	}
	slices.Sort(names)
	want := slices.Clone(blobs)
	slices.Sort(want)
	if len(blobs) != 3 || !slices.Equal(names, want) {
		t.Fatalf("directory holds %q, bootstrap blob table %q", names, blobs)
	}

	rep, err = converter.Convert(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Platforms[0].BackendBlobs {
		if !r.Skipped {
			t.Errorf("second conversion sent %s again", r.Location)
		}
	}

	cfg := imagemount.DefaultConfig()
	cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: dir}
	mnt := mounttest.FUSE(t, imagemount.Options{Target: target, Registry: reg, Config: cfg})
	requireSame(t, fx.UmociUnpack(t, sourceImage(t, true, false)), mnt.Dir())

	crep, err := checker.Check(context.Background(), checker.Options{Target: target, Source: srcRef.String(),
		SourceRegistry: reg, TargetRegistry: reg, TargetBackend: backend.NewLocalFS(dir)})
	if err != nil || !crep.OK {
		t.Fatalf("check with the backend: %v, %+v", err, crep)
	}
	crep, err = checker.Check(context.Background(), checker.Options{Target: target, Source: srcRef.String(),
		SourceRegistry: reg, TargetRegistry: reg})
	if err == nil && crep.OK {
		t.Fatal("check without the backend passed")
	}
	if err == nil && !strings.Contains(fmt.Sprint(crep.Problems), "its blobs are in a storage backend: give --target-backend-type") {
		t.Errorf("check without the backend does not say where the blobs are: %v", crep.Problems)
	}

	// Without the backend, copy refuses: the copy would lack every blob.
	if _, err := converter.Copy(context.Background(), converter.CopyOptions{Source: target, Target: host + "/nydus/partial:v1",
		SourceRegistry: reg, TargetRegistry: reg}); err == nil || !strings.Contains(err.Error(), "give --source-backend-type") {
		t.Errorf("copy of a backend image without its backend: %v", err)
	}

	// copy takes the blobs out of the backend: the copy has the blob layers
	// again, and reads from its registry alone.
	copyRef := host + "/nydus/copied:v1"
	cr, err := converter.Copy(context.Background(), converter.CopyOptions{Source: target, Target: copyRef,
		SourceRegistry: reg, TargetRegistry: reg, SourceBackend: backend.NewLocalFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cr.Blobs, blobs) {
		t.Errorf("copy attached %q, want the blob table %q", cr.Blobs, blobs)
	}
	cref, _ := name.ParseReference(copyRef, name.Insecure)
	cimg, err := remote.Image(cref)
	if err != nil {
		t.Fatal(err)
	}
	cm, _ := cimg.Manifest()
	ccf, _ := cimg.ConfigFile()
	if len(cm.Layers) != 4 || len(ccf.RootFS.DiffIDs) != 4 || cm.Layers[3].Digest != m.Layers[0].Digest {
		t.Fatalf("copy: layers %v, diff_ids %v; want the 3 blobs then the bootstrap", cm.Layers, ccf.RootFS.DiffIDs)
	}
	crep, err = checker.Check(context.Background(), checker.Options{Target: copyRef, Source: srcRef.String(),
		SourceRegistry: reg, TargetRegistry: reg})
	if err != nil || !crep.OK {
		t.Fatalf("check of the copy: %v, %+v", err, crep)
	}
	cmnt := mounttest.FUSE(t, imagemount.Options{Target: copyRef, Registry: reg, Config: imagemount.DefaultConfig()})
	requireSame(t, fx.UmociUnpack(t, sourceImage(t, true, false)), cmnt.Dir())
}
