package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
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

func startRecordingRegistry(t *testing.T) *recordingRegistry {
	t.Helper()
	rr := &recordingRegistry{}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
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

func (rr *recordingRegistry) last() write {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if len(rr.writes) == 0 {
		return write{}
	}
	return rr.writes[len(rr.writes)-1]
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

// An image is pushed blobs first and manifest last, and pulls back byte for byte.
func TestPush(t *testing.T) {
	for _, oci := range []bool{true, false} {
		rr := startRecordingRegistry(t)
		img := fx.NewImage(t, fx.AMD64, oci, fx.Gzip, fx.Zstd, fx.Uncompressed)
		ref := rr.host + "/dst:v1"
		desc, err := Push(context.Background(), ref, img, Options{Jobs: 2})
		if err != nil {
			t.Fatal(err)
		}
		if last := rr.last(); last != (write{manifest: true, target: "v1"}) {
			t.Errorf("last write %+v, want the manifest put by tag", last)
		}
		checkPushedAfterBlobs(t, rr, img, "v1")

		pulled, err := remote.Image(fx.MustRef(t, ref))
		if err != nil {
			t.Fatal(err)
		}
		wantRaw, _ := img.RawManifest()
		gotRaw, _ := pulled.RawManifest()
		if !bytes.Equal(gotRaw, wantRaw) {
			t.Errorf("pulled manifest differs:\n%s\nwant\n%s", gotRaw, wantRaw)
		}
		wantMT, _ := img.MediaType()
		if d, _ := pulled.Digest(); desc.Digest != d || desc.Size != int64(len(wantRaw)) || desc.MediaType != wantMT || desc.ArtifactType != "" {
			t.Errorf("Push returned %+v, pulled digest %s", desc, d)
		}
		fx.CheckLayers(t, pulled, img)

		// Our reader agrees.
		odesc, a, err := Open(context.Background(), ref, Options{})
		if err != nil || odesc.Digest != desc.Digest {
			t.Fatalf("Open after Push: %+v, %v", odesc, err)
		}
		if _, ok := a.(v1.Image); !ok {
			t.Fatalf("Open returned a %T, want a v1.Image", a)
		}
	}
}

// An index is put after every manifest it lists, each after its blobs.
func TestPushIndex(t *testing.T) {
	for _, oci := range []bool{true, false} {
		rr := startRecordingRegistry(t)
		ti := fx.NewIndex(t, oci)
		desc, err := Push(context.Background(), rr.host+"/dst:multi", ti.Index, Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantDigest, _ := ti.Index.Digest()
		wantType, _ := ti.Index.MediaType()
		if desc.Digest != wantDigest || desc.MediaType != wantType {
			t.Errorf("Push returned %+v, want %s %s", desc, wantDigest, wantType)
		}
		if last := rr.last(); last != (write{manifest: true, target: "multi"}) {
			t.Errorf("last write %+v, want the index put", last)
		}
		for _, img := range []fx.Image{ti.AMD64, ti.ARM64, ti.Attestation} {
			d, _ := img.Digest()
			checkPushedAfterBlobs(t, rr, img, d.String())
			if rr.position(d.String()) > rr.position("multi") {
				t.Errorf("manifest %s put after the index", d)
			}
		}
		_, a, err := Open(context.Background(), rr.host+"/dst:multi", Options{})
		if err != nil {
			t.Fatal(err)
		}
		idx, ok := a.(v1.ImageIndex)
		if !ok {
			t.Fatalf("Open returned a %T, want a v1.ImageIndex", a)
		}
		got, _ := idx.RawManifest()
		want, _ := ti.Index.RawManifest()
		if !bytes.Equal(got, want) {
			t.Errorf("index reads back as\n%s\nwant\n%s", got, want)
		}
	}
}

func TestPushCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rr := startRecordingRegistry(t)
	if _, err := Push(ctx, rr.host+"/dst:v1", fx.NewImage(t, fx.AMD64, true, fx.Gzip), Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("pushing with a cancelled context: %v", err)
	}
	if len(rr.writes) != 0 {
		t.Errorf("a cancelled push wrote to the registry: %+v", rr.writes)
	}
}
