package packer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nydus-go/nydusify/imageref"
)

// write is a request that changed the registry: a blob upload completed (PUT with a
// digest) or a manifest put.
type write struct {
	manifest bool
	target   string // the blob digest, or the manifest tag or digest
}

// recordingRegistry is an in-process registry that records its writes in order.
type recordingRegistry struct {
	host string
	mu   sync.Mutex // guards writes
	// writes lists completed blob uploads and manifest puts in the order they arrived.
	writes []write
}

func startRegistry(t *testing.T) *recordingRegistry {
	t.Helper()
	rr := &recordingRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			rr.mu.Lock()
			if i := strings.Index(r.URL.Path, "/manifests/"); i >= 0 {
				rr.writes = append(rr.writes, write{manifest: true, target: r.URL.Path[i+len("/manifests/"):]})
			} else if d := r.URL.Query().Get("digest"); d != "" {
				rr.writes = append(rr.writes, write{target: d})
			}
			rr.mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	rr.host = strings.TrimPrefix(s.URL, "http://")
	return rr
}

// position returns where the write of target happened, or -1.
func (rr *recordingRegistry) position(target string) int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return slices.IndexFunc(rr.writes, func(w write) bool { return w.target == target })
}

func (rr *recordingRegistry) reset() {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.writes = nil
}

// checkPushedAfterBlobs checks that img's manifest was put after every blob it names.
func checkPushedAfterBlobs(t *testing.T, rr *recordingRegistry, img v1.Image, manifestTarget string) {
	t.Helper()
	m, _ := img.Manifest()
	at := rr.position(manifestTarget)
	if at < 0 {
		t.Fatalf("manifest %s was never put (writes %+v)", manifestTarget, rr.writes)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if p := rr.position(d.Digest.String()); p < 0 || p > at {
			t.Errorf("blob %s written at %d, manifest at %d", d.Digest, p, at)
		}
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// From a source in one repository to the nydus image in another, then pulled back.
func TestPublishRegistry(t *testing.T) {
	ctx := context.Background()
	for _, oci := range []bool{true, false} {
		rr := startRegistry(t)
		srcImg := sourceImage(t, oci, v1.Platform{OS: "linux", Architecture: "amd64"})
		srcRef := imageref.Ref{Kind: imageref.Registry, Name: rr.host + "/src:v1"}
		if err := remote.Write(mustRef(t, srcRef.Name), srcImg.Image); err != nil {
			t.Fatal(err)
		}
		src, err := imageref.OpenSource(ctx, srcRef, imageref.RegistryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		imgs, _, err := src.Images(nil, true)
		if err != nil {
			t.Fatal(err)
		}
		blobs, bootstrap := nydusParts(t, imgs[0], 2, 20)
		img, err := Image(imgs[0], blobs, bootstrap, srcRef.String())
		if err != nil {
			t.Fatal(err)
		}

		rr.reset()
		target := imageref.Ref{Kind: imageref.Registry, Name: rr.host + "/dst:v1-nydus"}
		desc, err := Publish(ctx, target, []Platformed{{Platform: imgs[0].Platform, Image: img}}, imageref.RegistryOptions{Jobs: 2})
		if err != nil {
			t.Fatal(err)
		}
		rr.mu.Lock()
		last := rr.writes[len(rr.writes)-1]
		rr.mu.Unlock()
		if last != (write{manifest: true, target: "v1-nydus"}) {
			t.Errorf("last write %+v, want the manifest put by tag", last)
		}
		checkPushedAfterBlobs(t, rr, img, "v1-nydus")

		pulled, err := remote.Image(mustRef(t, target.Name))
		if err != nil {
			t.Fatal(err)
		}
		wantRaw, _ := img.RawManifest()
		gotRaw, _ := pulled.RawManifest()
		if !bytes.Equal(gotRaw, wantRaw) {
			t.Errorf("pulled manifest differs:\n%s\nwant\n%s", gotRaw, wantRaw)
		}
		if d, _ := pulled.Digest(); desc.Digest != d || desc.Size != int64(len(wantRaw)) || desc.MediaType != imgs[0].Descriptor.MediaType {
			t.Errorf("Publish returned %+v, pulled digest %s", desc, d)
		}
		checkNydusImage(t, pulled, imgs[0], blobs, bootstrap, srcRef.String())
	}
}

func TestPublishRegistryIndex(t *testing.T) {
	ctx := context.Background()
	for _, oci := range []bool{true, false} {
		rr := startRegistry(t)
		platforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
		var images []Platformed
		for i, p := range platforms {
			src := sourceImage(t, oci, p)
			blobs, bootstrap := nydusParts(t, src, 1, uint64(30+10*i))
			img, err := Image(src, blobs, bootstrap, "src")
			if err != nil {
				t.Fatal(err)
			}
			images = append(images, Platformed{Platform: p, Image: img})
		}
		target := imageref.Ref{Kind: imageref.Registry, Name: rr.host + "/dst:multi"}
		desc, err := Publish(ctx, target, images, imageref.RegistryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wantType := types.OCIImageIndex
		if !oci {
			wantType = types.DockerManifestList
		}
		idx, err := remote.Index(mustRef(t, target.Name))
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := idx.Digest(); desc.Digest != d || desc.MediaType != wantType || im.MediaType != wantType {
			t.Errorf("index %s %s, Publish returned %+v, want a %s", d, im.MediaType, desc, wantType)
		}
		if len(im.Manifests) != len(images) {
			t.Fatalf("index lists %d manifests, want %d", len(im.Manifests), len(images))
		}
		for i, m := range im.Manifests {
			d, _ := images[i].Image.Digest()
			mt, _ := images[i].Image.MediaType()
			if m.Digest != d || m.MediaType != mt || m.Platform == nil || !m.Platform.Equals(platforms[i]) || m.ArtifactType != "" {
				t.Errorf("index entry %d: %+v, want %s %s %v", i, m, d, mt, platforms[i])
			}
			checkPushedAfterBlobs(t, rr, images[i].Image, d.String())
			if rr.position(d.String()) > rr.position("multi") {
				t.Errorf("manifest %d put after the index", i)
			}
		}
		rr.mu.Lock()
		if last := rr.writes[len(rr.writes)-1]; last != (write{manifest: true, target: "multi"}) {
			t.Errorf("last write %+v, want the index put", last)
		}
		rr.mu.Unlock()
	}
}

// indexJSON reads a layout's index.json.
func indexJSON(t *testing.T, dir string) *v1.IndexManifest {
	t.Helper()
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func TestPublishOCILayout(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "new", "layout") // created by Publish
	src := sourceImage(t, true, v1.Platform{OS: "linux", Architecture: "amd64"})
	blobs, bootstrap := nydusParts(t, src, 2, 60)
	img, err := Image(src, blobs, bootstrap, "src")
	if err != nil {
		t.Fatal(err)
	}
	one := []Platformed{{Platform: src.Platform, Image: img}}

	desc, err := Publish(ctx, imageref.Ref{Kind: imageref.OCILayout, Path: dir}, one, imageref.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	im := indexJSON(t, dir)
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != desc.Digest || im.Manifests[0].Annotations[ocispec.AnnotationRefName] != DefaultLayoutTag {
		t.Fatalf("index.json %+v, want one entry %s named %q", im.Manifests, desc.Digest, DefaultLayoutTag)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	checkNydusImage(t, got, src, blobs, bootstrap, "src")
	// Our own reader agrees, tag and all.
	back, err := imageref.OpenSource(ctx, imageref.Ref{Kind: imageref.OCILayout, Path: dir, Name: DefaultLayoutTag}, imageref.RegistryOptions{})
	if err != nil || back.Digest() != desc.Digest {
		t.Fatalf("reopening with imageref: %v", err)
	}

	// A second image under another tag is added; under the same tag it replaces the first.
	blobs2, bootstrap2 := nydusParts(t, src, 1, 70)
	img2, err := Image(src, blobs2, bootstrap2, "src")
	if err != nil {
		t.Fatal(err)
	}
	two := []Platformed{{Platform: src.Platform, Image: img2}}
	desc2, err := Publish(ctx, imageref.Ref{Kind: imageref.OCILayout, Path: dir, Name: "v2"}, two, imageref.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if im := indexJSON(t, dir); len(im.Manifests) != 2 {
		t.Fatalf("after adding v2: %d entries, want 2", len(im.Manifests))
	}
	if _, err := Publish(ctx, imageref.Ref{Kind: imageref.OCILayout, Path: dir, Name: DefaultLayoutTag}, two, imageref.RegistryOptions{}); err != nil {
		t.Fatal(err)
	}
	im = indexJSON(t, dir)
	var names []string
	for _, m := range im.Manifests {
		names = append(names, m.Annotations[ocispec.AnnotationRefName])
		if m.Digest != desc2.Digest {
			t.Errorf("entry %q points at %s, want %s", names[len(names)-1], m.Digest, desc2.Digest)
		}
	}
	if !reflect.DeepEqual(names, []string{"v2", DefaultLayoutTag}) {
		t.Errorf("entries %q, want v2 then the replaced %s", names, DefaultLayoutTag)
	}
	checkNoTempFiles(t, dir)
}

func TestPublishOCILayoutIndex(t *testing.T) {
	dir := t.TempDir()
	var images []Platformed
	for i, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		src := sourceImage(t, false, p)
		blobs, bootstrap := nydusParts(t, src, 1, uint64(80+i))
		img, err := Image(src, blobs, bootstrap, "src")
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, Platformed{Platform: p, Image: img})
	}
	desc, err := Publish(context.Background(), imageref.Ref{Kind: imageref.OCILayout, Path: dir, Name: "multi"}, images, imageref.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.DockerManifestList {
		t.Errorf("published %s, want a docker manifest list", desc.MediaType)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	child, err := idx.ImageIndex(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := child.IndexManifest()
	for i, m := range im.Manifests {
		img, err := child.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := images[i].Image.RawManifest()
		if got, _ := img.RawManifest(); !bytes.Equal(got, want) || !m.Platform.Equals(images[i].Platform) {
			t.Errorf("manifest %d differs or has platform %v", i, m.Platform)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			d, _ := l.Digest()
			if hashOf(readAll(t, l.Compressed)) != d {
				t.Errorf("manifest %d: layer %s stored wrong", i, d)
			}
		}
	}
}

// A publish that fails while writing blobs leaves index.json as it was.
func TestPublishOCILayoutFailureKeepsIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := sourceImage(t, true, v1.Platform{OS: "linux", Architecture: "amd64"})
	blobs, bootstrap := nydusParts(t, src, 1, 90)
	good, err := Image(src, blobs, bootstrap, "src")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, imageref.Ref{Kind: imageref.OCILayout, Path: dir, Name: "v1"}, []Platformed{{Platform: src.Platform, Image: good}}, imageref.RegistryOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}

	// The second blob's file changes after it was hashed: its write fails verification.
	blobDir := t.TempDir()
	b1, _ := BlobLayer(writeRandom(t, blobDir, "b1", 5000, 91))
	path := writeRandom(t, blobDir, "b2", 5000, 92)
	b2, _ := BlobLayer(path)
	writeRandom(t, blobDir, "b2", 5000, 93)
	bad, err := Image(src, []v1.Layer{b1, b2}, bootstrap, "src")
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"v1", "v2"} {
		_, err := Publish(ctx, imageref.Ref{Kind: imageref.OCILayout, Path: dir, Name: tag}, []Platformed{{Platform: src.Platform, Image: bad}}, imageref.RegistryOptions{})
		if err == nil || !strings.Contains(err.Error(), "verify") {
			t.Fatalf("publishing a changed blob as %s: %v, want a verification error", tag, err)
		}
		after, _ := os.ReadFile(filepath.Join(dir, "index.json"))
		if !bytes.Equal(after, before) {
			t.Fatalf("a failed publish as %s changed index.json:\n%s", tag, after)
		}
		d, _ := b2.Digest()
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Hex)); !os.IsNotExist(err) {
			t.Errorf("the unverified blob is in place: %v", err)
		}
	}
	checkNoTempFiles(t, dir)
}

func checkNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		// Nothing in a layout is hidden but temporary files.
		if err == nil && strings.HasPrefix(d.Name(), ".") && d.Name() != "." {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestPublishErrors(t *testing.T) {
	ctx := context.Background()
	amd := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	ociSrc, dockerSrc := sourceImage(t, true, amd), sourceImage(t, false, arm)
	blobs, bootstrap := nydusParts(t, ociSrc, 1, 95)
	ociImg, err := Image(ociSrc, blobs, bootstrap, "src")
	if err != nil {
		t.Fatal(err)
	}
	blobs, bootstrap = nydusParts(t, dockerSrc, 1, 96)
	dockerImg, err := Image(dockerSrc, blobs, bootstrap, "src")
	if err != nil {
		t.Fatal(err)
	}
	layoutRef := imageref.Ref{Kind: imageref.OCILayout, Path: t.TempDir()}
	for _, tc := range []struct {
		name    string
		target  imageref.Ref
		images  []Platformed
		wantErr string
	}{
		{"no images", layoutRef, nil, "no images"},
		{"mixed families", layoutRef, []Platformed{{amd, ociImg}, {arm, dockerImg}}, "belongs in a application/vnd.oci.image.index.v1+json"},
		{"duplicate platform", layoutRef, []Platformed{{amd, ociImg}, {amd, ociImg}}, "platform linux/amd64 appears twice"},
		{"no platform", layoutRef, []Platformed{{amd, ociImg}, {v1.Platform{}, ociImg}}, "image 1 has no platform"},
		{"oci archive", imageref.Ref{Kind: imageref.OCIArchive, Path: "x.tar"}, []Platformed{{amd, ociImg}}, "oci-archive is not supported as a target yet"},
		{"docker archive", imageref.Ref{Kind: imageref.DockerArchive, Path: "x.tar"}, []Platformed{{amd, ociImg}}, "docker-archive is not supported as a target yet"},
	} {
		_, err := Publish(ctx, tc.target, tc.images, imageref.RegistryOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "publishing to ") {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
	if entries, _ := os.ReadDir(layoutRef.Path); len(entries) != 0 {
		t.Errorf("failed publishes wrote %d entries into the layout", len(entries))
	}
}

func TestPublishCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src := sourceImage(t, true, v1.Platform{OS: "linux", Architecture: "amd64"})
	blobs, bootstrap := nydusParts(t, src, 1, 99)
	img, err := Image(src, blobs, bootstrap, "src")
	if err != nil {
		t.Fatal(err)
	}
	images := []Platformed{{Platform: src.Platform, Image: img}}
	dir := t.TempDir()
	rr := startRegistry(t)
	for _, target := range []imageref.Ref{
		{Kind: imageref.OCILayout, Path: dir},
		{Kind: imageref.Registry, Name: rr.host + "/dst:v1"},
	} {
		if _, err := Publish(ctx, target, images, imageref.RegistryOptions{}); !errors.Is(err, context.Canceled) {
			t.Errorf("publishing to %s with a cancelled context: %v", target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); !os.IsNotExist(err) {
		t.Errorf("a cancelled publish wrote index.json: %v", err)
	}
	if len(rr.writes) != 0 {
		t.Errorf("a cancelled publish wrote to the registry: %+v", rr.writes)
	}
}
