package layout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
)

// taggedImage is the image a concurrent writer writes under tag: layers every writer
// shares (so writers race on the same blobs too), then one layer of its own.
func taggedImage(t testing.TB, tag string) v1.Image {
	t.Helper()
	base := fx.NewImage(t, fx.AMD64, true, fx.Gzip, fx.Uncompressed)
	own := static.NewLayer(fx.Tar(t, map[string]string{"tag": tag}), types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(base, own)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

const (
	helperDirEnv = "NYDUSIFY_LAYOUT_HELPER_DIR"
	helperTagEnv = "NYDUSIFY_LAYOUT_HELPER_TAG"
)

// TestWriteHelperProcess is not a test: TestWriteConcurrent runs the test binary with it
// selected to get writers that are separate processes.
func TestWriteHelperProcess(t *testing.T) {
	dir, tag := os.Getenv(helperDirEnv), os.Getenv(helperTagEnv)
	if dir == "" {
		// Outside TestWriteConcurrent there is nothing to do; returning rather
		// than skipping keeps CI's no-skip rule for tests that lack something.
		return
	}
	if _, err := Write(context.Background(), dir, tag, taggedImage(t, tag)); err != nil {
		t.Fatal(err)
	}
}

// Many writers, goroutines and processes at once, each writing its own tag into one
// layout: every tag ends up in index.json, pointing at its image, and every blob verifies.
func TestWriteConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts helper processes")
	}
	const goroutines, processes = 16, 8
	dir := t.TempDir()
	ctx := context.Background()

	var tags []string
	var cmds []*exec.Cmd
	for i := range processes {
		tag := fmt.Sprintf("proc-%d", i)
		tags = append(tags, tag)
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriteHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperTagEnv+"="+tag)
		cmds = append(cmds, cmd)
	}
	images := map[string]v1.Image{}
	for i := range goroutines {
		tag := fmt.Sprintf("goroutine-%d", i)
		tags = append(tags, tag)
		images[tag] = taggedImage(t, tag)
	}
	for _, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for tag, img := range images {
		wg.Go(func() {
			if _, err := Write(ctx, dir, tag, img); err != nil {
				errs <- fmt.Errorf("writer %s: %w", tag, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("writer process %d: %v", i, err)
		}
	}

	im := indexJSON(t, dir)
	var got []string
	for _, d := range im.Manifests {
		tag := d.Annotations[ocispec.AnnotationRefName]
		got = append(got, tag)
		want, _ := taggedImage(t, tag).Digest()
		if d.Digest != want {
			t.Errorf("%s points at %s, want %s", tag, d.Digest, want)
		}
	}
	slices.Sort(got)
	slices.Sort(tags)
	if !slices.Equal(got, tags) {
		t.Fatalf("index.json names %d images %q, want all %d: %q", len(got), got, len(tags), tags)
	}
	for _, tag := range tags {
		_, a, err := Open(dir, tag)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := a.(v1.Image).Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Errorf("%s: %v", tag, err)
			}
			rc.Close()
		}
	}
	entries, err := os.ReadDir(BlobDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(BlobDir(dir), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s does not hash to its name", e.Name())
		}
	}
	checkNoTempFiles(t, dir)
}
