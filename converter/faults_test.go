package converter_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/internal/faultproxy"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/retry"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/registry"
)

// faultRetry is the default policy with waits short enough for tests: the
// default number of attempts, and a stall timeout below the proxy's stalls.
var faultRetry = retry.Policy{Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Stall: time.Second}

func faultReg() registry.Options { return registry.Options{PlainHTTP: true, Retry: faultRetry} }

func isBlobGet(r *http.Request, d v1.Hash) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String())
}

// flipWriter flips the first byte of a body.
type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (f *flipWriter) Write(b []byte) (int, error) {
	if !f.done && len(b) > 0 {
		f.done = true
		c := append([]byte(nil), b...)
		c[0] ^= 0xff
		return f.ResponseWriter.Write(c)
	}
	return f.ResponseWriter.Write(b)
}

// The registry corrupts every download of the third layer while the first
// is still downloading: the conversion fails with the third layer's real
// cause, not with the cancellation its failure caused in the first.
func TestLaterLayerFailureNamesCause(t *testing.T) {
	img := sourceImage(t, true, false)
	layers, _ := img.Layers()
	d1, _ := layers[0].Digest()
	d3, _ := layers[2].Digest()
	host := fx.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case isBlobGet(r, d1):
				time.Sleep(700 * time.Millisecond)
			case isBlobGet(r, d3):
				w = &flipWriter{ResponseWriter: w}
			}
			next.ServeHTTP(w, r)
		})
	})
	if err := remote.Write(fx.MustRef(t, host+"/src:v1"), img); err != nil {
		t.Fatal(err)
	}
	_, err := converter.Convert(context.Background(), converter.Options{
		Source: host + "/src:v1", Target: "oci:" + filepath.Join(t.TempDir(), "dst") + ":t",
		SourceRegistry: faultReg(), WorkDir: t.TempDir(),
	})
	if err == nil || !strings.Contains(err.Error(), d3.String()) || strings.Contains(err.Error(), "canceled") {
		t.Fatalf("third layer corrupt: %v, want its own error naming %s", err, d3)
	}
	t.Log(err)
}

// bigLayerImage is a one-layer image whose gzip layer (3 MiB of random
// bytes) is larger than the bodies the transport buffers, so a download cut
// short surfaces while the converter spills it.
func bigLayerImage(t *testing.T) v1.Image {
	rnd := rand.New(rand.NewPCG(1, 1))
	body := make([]byte, 3<<20)
	for i := range body {
		body[i] = byte(rnd.Uint32())
	}
	l := layerOf(t, tarBytes(t, tar.FormatPAX, reg("random", string(body), 0o644)), "gzip", types.OCILayer)
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// A layer download cut off midway twice is downloaded again, whole, and the
// conversion succeeds.
func TestCutDownloadIsRetried(t *testing.T) {
	img := bigLayerImage(t)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	var gets atomic.Int64
	host := fx.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isBlobGet(r, d) {
				gets.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	})
	if err := remote.Write(fx.MustRef(t, host+"/src:v1"), img); err != nil {
		t.Fatal(err)
	}
	var cuts atomic.Int64
	cuts.Store(2)
	px, err := faultproxy.Start("http://"+host, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Truncate},
		Match: func(r *http.Request) bool { return isBlobGet(r, d) && cuts.Add(-1) >= 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	work := t.TempDir()
	if _, err := converter.Convert(context.Background(), converter.Options{
		Source: px.Host + "/src:v1", Target: "oci:" + filepath.Join(t.TempDir(), "dst") + ":t",
		SourceRegistry: faultReg(), WorkDir: work,
	}); err != nil {
		t.Fatalf("layer download cut off twice: %v", err)
	}
	if gets.Load() != 3 {
		t.Errorf("%d downloads of the layer, want 3 (two cut off, one whole)", gets.Load())
	}
	requireEmptyDir(t, work)
}

// A config whose diff_ids do not match the layers' uncompressed content (or
// do not count them) fails the conversion, naming the layer.
func TestDiffIDMismatch(t *testing.T) {
	img := sourceImage(t, true, false)
	layers, _ := img.Layers()
	d2, _ := layers[1].Digest()
	bogus := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256([]byte("not the layer")))}
	for _, tc := range []struct {
		name   string
		change func(ids []v1.Hash) []v1.Hash
		want   []string
	}{
		{"wrong", func(ids []v1.Hash) []v1.Hash { ids[1] = bogus; return ids }, []string{"layer 2 of 3", d2.String(), bogus.String()}},
		{"short", func(ids []v1.Hash) []v1.Hash { return ids[:2] }, []string{"2 diff_ids for 3 layers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			cf = cf.DeepCopy()
			cf.RootFS.DiffIDs = tc.change(cf.RootFS.DiffIDs)
			bad, err := mutate.ConfigFile(img, cf)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			lp, err := layout.Write(filepath.Join(dir, "src"), empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := lp.AppendImage(bad, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "t"})); err != nil {
				t.Fatal(err)
			}
			_, err = converter.Convert(context.Background(), converter.Options{
				Source: "oci:" + filepath.Join(dir, "src") + ":t", Target: "oci:" + filepath.Join(dir, "dst") + ":t",
			})
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("diff_ids %s: %v, want it to name %q", tc.name, err, w)
				}
			}
		})
	}
}

// A registry that accepts connections and then says nothing fails the
// conversion within the stall timeouts, saying it stalled.
func TestStalledRegistry(t *testing.T) {
	host := fx.StartRegistry(t, nil)
	if err := remote.Write(fx.MustRef(t, host+"/src:v1"), sourceImage(t, true, false)); err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.Start("http://"+host, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Stall}, StallFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	reg := faultReg()
	reg.Retry.Stall = 300 * time.Millisecond
	start := time.Now()
	_, err = converter.Convert(context.Background(), converter.Options{
		Source: px.Host + "/src:v1", Target: "oci:" + filepath.Join(t.TempDir(), "dst") + ":t",
		SourceRegistry: reg, WorkDir: t.TempDir(),
	})
	if err == nil || !strings.Contains(err.Error(), "stalled") || time.Since(start) > 20*time.Second {
		t.Fatalf("stalled registry: %v after %v, want a stall error within seconds", err, time.Since(start))
	}
}

func requireEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s left in the work directory", e.Name())
	}
}

// manyLayerImage has n small layers, so that a conversion makes many
// requests.
func manyLayerImage(t *testing.T, n int) v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	for i := range n {
		l := layerOf(t, tarBytes(t, tar.FormatPAX, reg(fmt.Sprintf("f%d", i), strings.Repeat("x", 100*i+1), 0o644)), "gzip", types.OCILayer)
		var err error
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// TestConvertThroughFaults puts a proxy injecting 503s, resets, truncated
// bodies and stalls between us and Debian's docker-registry. At 10% of
// requests convert completes, check (through the faults too) passes, and a
// FUSE mount reads every file right. At 50% a conversion fails cleanly: a
// clear error, nothing published, nothing left in the work directory; and a
// mount reading through 50% faults serves correct data or EIO, never wrong
// data.
func TestConvertThroughFaults(t *testing.T) {
	host := testenv.StartRegistry(t)
	src := sourceImage(t, true, false)
	if err := remote.Write(fx.MustRef(t, host+"/src/faults:v1"), src); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(fx.MustRef(t, host+"/src/many:v1"), manyLayerImage(t, 12)); err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.Start("http://"+host, faultproxy.Options{Rate: 0.1, Seed: 15, StallFor: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	ctx := context.Background()
	target := px.Host + "/nydus/faults:v1"

	// Two conversions: the image the mounts compare with umoci's flattening,
	// and a twelve-layer one for check (the first has parents implied by a
	// path alone, which check's own flattening reports with or without
	// faults).
	for _, name := range []string{"faults", "many"} {
		work := t.TempDir()
		if _, err := converter.Convert(ctx, converter.Options{
			Source: px.Host + "/src/" + name + ":v1", Target: px.Host + "/nydus/" + name + ":v1",
			SourceRegistry: faultReg(), TargetRegistry: faultReg(), WorkDir: work,
		}); err != nil {
			t.Fatalf("convert %s at 10%% faults: %v", name, err)
		}
		requireEmptyDir(t, work)
	}
	n, faults := px.Stats()
	t.Logf("converts at 10%%: %d requests, faults %v", n, faults)

	rep, err := checker.Check(ctx, checker.Options{
		Target: px.Host + "/nydus/many:v1", Source: px.Host + "/src/many:v1",
		TargetRegistry: faultReg(), SourceRegistry: faultReg(), WorkDir: t.TempDir(),
	})
	if err != nil || !rep.OK {
		t.Fatalf("check at 10%% faults: %v, %+v", err, rep)
	}
	n2, faults := px.Stats()
	t.Logf("check at 10%%: %d requests, faults %v", n2-n, faults)

	want := fx.UmociUnpack(t, src)
	for _, rate := range []float64{0.1, 0.5} {
		t.Run(fmt.Sprintf("mount%.0f", rate*100), func(t *testing.T) {
			testenv.RequireFUSE(t)
			mountThroughFaults(t, px, target, want, rate)
		})
	}

	px.SetRate(0.5)
	work := t.TempDir()
	_, err = converter.Convert(ctx, converter.Options{
		Source: px.Host + "/src/many:v1", Target: px.Host + "/nydus/many50:v1",
		SourceRegistry: faultReg(), TargetRegistry: faultReg(), WorkDir: work,
	})
	if err == nil {
		t.Fatal("convert at 50% faults succeeded")
	}
	t.Logf("convert at 50%%: %v", err)
	if !regexpAny(err.Error(), "503", "stalled", "reset", "EOF", "gave up", "broken pipe") {
		t.Errorf("error at 50%% faults names no cause: %v", err)
	}
	requireEmptyDir(t, work)
	if _, err := remote.Head(fx.MustRef(t, host+"/nydus/many50:v1")); err == nil {
		t.Error("a manifest was published by the failed conversion")
	}
}

func regexpAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// mountThroughFaults mounts target with the proxy quiet (the mount's start
// through faults is the 10% convert's business), then reads every file of
// the mount with rate faults and compares each one it could read with the
// source tree want; a file that cannot be read must fail with EIO.
func mountThroughFaults(t *testing.T, px *faultproxy.Proxy, target, want string, rate float64) {
	px.SetRate(0)
	m := mounttest.FUSE(t, imagemount.Options{
		Target: target, Registry: faultReg(), Config: imagemount.DefaultConfig(),
	})
	px.SetRate(rate)
	defer px.SetRate(0.1)
	var read, eio int
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		wantData, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(m.Dir(), rel))
		switch {
		case errors.Is(err, syscall.EIO):
			eio++
		case err != nil:
			t.Errorf("%s: %v, want its data or EIO", rel, err)
		case !bytes.Equal(got, wantData):
			t.Errorf("%s: wrong data through %.0f%% faults", rel, rate*100)
		default:
			read++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mount at %.0f%% faults: %d files read right, %d EIO", rate*100, read, eio)
	if read == 0 {
		t.Error("no file could be read; the test proves nothing")
	}
	if rate <= 0.1 && eio > 0 {
		t.Errorf("%d files unreadable at %.0f%% faults", eio, rate*100)
	}
}
