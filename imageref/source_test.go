package imageref

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/registry"
)

// openIndexSource pushes the fixture index to an in-process registry and opens it.
func openIndexSource(t *testing.T, oci bool) (*Source, fx.Index) {
	t.Helper()
	ti := fx.NewIndex(t, oci)
	host := fx.StartRegistry(t, nil)
	ref := fx.MustRef(t, host+"/multi:v1")
	if err := remote.WriteIndex(ref, ti.Index); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(context.Background(), Ref{Kind: Registry, Name: ref.String()}, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return src, ti
}

func TestOpenSourceRegistryIndex(t *testing.T) {
	for _, oci := range []bool{true, false} {
		t.Run(map[bool]string{true: "oci", false: "docker"}[oci], func(t *testing.T) { testRegistryIndex(t, oci) })
	}
}

func testRegistryIndex(t *testing.T, oci bool) {
	src, ti := openIndexSource(t, oci)
	wantDigest, _ := ti.Index.Digest()
	wantType, _ := ti.Index.MediaType()
	if src.Digest() != wantDigest || !src.IsIndex() || src.MediaType() != wantType {
		t.Fatalf("source = %s %s index=%v, want %s %s index", src.Digest(), src.MediaType(), src.IsIndex(), wantDigest, wantType)
	}

	t.Run("explicit platform", func(t *testing.T) {
		// No variant asked: arm64/v8 matches.
		imgs, skipped, err := src.Images([]v1.Platform{{OS: "linux", Architecture: "arm64"}}, false)
		if err != nil {
			t.Fatal(err)
		}
		checkImages(t, imgs, ti.ARM64)
		if len(skipped) != 1 || !skipped[0].Platform.Equals(fx.Attestation) {
			t.Errorf("skipped = %+v, want the attestation manifest", skipped)
		}
	})
	t.Run("arm64/v8 matches arm64 without variant", func(t *testing.T) {
		imgs, _, err := src.Images([]v1.Platform{{OS: "linux", Architecture: "arm64", Variant: "v8"}}, false)
		if err != nil {
			t.Fatal(err)
		}
		checkImages(t, imgs, ti.ARM64)
	})
	t.Run("host default", func(t *testing.T) {
		var want fx.Image
		switch runtime.GOARCH {
		case "amd64":
			want = ti.AMD64
		case "arm64":
			want = ti.ARM64
		default:
			t.Skipf("the fixture index has no %s image", runtime.GOARCH)
		}
		imgs, _, err := src.Images(nil, false)
		if err != nil {
			t.Fatal(err)
		}
		checkImages(t, imgs, want)
	})
	t.Run("all skips attestations", func(t *testing.T) {
		imgs, skipped, err := src.Images(nil, true)
		if err != nil {
			t.Fatal(err)
		}
		checkImages(t, imgs, ti.AMD64, ti.ARM64)
		attDigest, _ := ti.Attestation.Digest()
		if len(skipped) != 1 || skipped[0].Digest != attDigest {
			t.Errorf("skipped = %+v, want the attestation manifest %s", skipped, attDigest)
		}
	})
	t.Run("two platforms", func(t *testing.T) {
		imgs, _, err := src.Images([]v1.Platform{fx.ARM64, fx.AMD64}, false)
		if err != nil {
			t.Fatal(err)
		}
		checkImages(t, imgs, ti.AMD64, ti.ARM64) // index order, not request order
	})
	for _, tc := range []struct {
		name      string
		platforms []v1.Platform
		all       bool
		wantErr   string
	}{
		{"missing platform", []v1.Platform{{OS: "linux", Architecture: "s390x"}}, false, "no manifest for linux/s390x (it has linux/amd64, linux/arm64/v8)"},
		{"wrong variant", []v1.Platform{{OS: "linux", Architecture: "arm64", Variant: "v9"}}, false, "no manifest for linux/arm64/v9"},
		{"all with platforms", []v1.Platform{fx.AMD64}, true, "conflict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := src.Images(tc.platforms, tc.all)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Images = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// checkImages checks that got are the want images, with platform, descriptor and content.
func checkImages(t *testing.T, got []PlatformImage, want ...fx.Image) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d images, want %d", len(got), len(want))
	}
	for i, pi := range got {
		w := want[i]
		wantDigest, _ := w.Digest()
		wantCfg, _ := w.ConfigFile()
		if pi.Descriptor.Digest != wantDigest {
			t.Errorf("image %d: descriptor digest %s, want %s", i, pi.Descriptor.Digest, wantDigest)
		}
		if d, err := pi.Image.Digest(); err != nil || d != wantDigest {
			t.Errorf("image %d: digest %s, %v; want %s", i, d, err, wantDigest)
		}
		if wantMT, _ := w.MediaType(); pi.Descriptor.MediaType != wantMT {
			t.Errorf("image %d: media type %s, want %s", i, pi.Descriptor.MediaType, wantMT)
		}
		if !pi.Platform.Equals(*wantCfg.Platform()) || pi.Descriptor.Platform == nil || !pi.Descriptor.Platform.Equals(pi.Platform) {
			t.Errorf("image %d: platform %v (descriptor %v), want %v", i, pi.Platform, pi.Descriptor.Platform, wantCfg.Platform())
		}
		fx.CheckLayers(t, pi.Image, w)
	}
}

func TestOpenSourceRegistrySingleManifest(t *testing.T) {
	for _, oci := range []bool{false, true} {
		img := fx.NewImage(t, fx.ARM64, oci, fx.Gzip, fx.Uncompressed)
		host := fx.StartRegistry(t, nil)
		ref := fx.MustRef(t, host+"/single:v1")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		src, err := OpenSource(context.Background(), Ref{Kind: Registry, Name: ref.String()}, registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantMT, _ := img.MediaType()
		if src.IsIndex() || src.MediaType() != wantMT {
			t.Errorf("oci=%v: index=%v media type %s, want a %s manifest", oci, src.IsIndex(), src.MediaType(), wantMT)
		}
		// A single manifest is returned for the default (host) platform, and for any list
		// holding its platform (arm64 without a variant is arm64/v8).
		for _, platforms := range [][]v1.Platform{nil, {{OS: "linux", Architecture: "arm64"}}, {fx.AMD64, fx.ARM64}} {
			imgs, skipped, err := src.Images(platforms, false)
			if err != nil || len(skipped) != 0 {
				t.Fatalf("oci=%v: Images(%v): %v, skipped %v", oci, platforms, err, skipped)
			}
			checkImages(t, imgs, img)
		}
		// An explicit platform it is not is an error naming the one it is.
		_, _, err = src.Images([]v1.Platform{fx.AMD64}, false)
		want := "is a single-platform image for linux/arm64/v8; it has no manifest for linux/amd64"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("oci=%v: Images(linux/amd64) of an arm64 image = %v, want error containing %q", oci, err, want)
		}
	}
}

func TestOpenSourceRegistryMissing(t *testing.T) {
	host := fx.StartRegistry(t, nil)
	_, err := OpenSource(context.Background(), Ref{Kind: Registry, Name: host + "/none:v1"}, registry.Options{})
	if err == nil || !strings.Contains(err.Error(), "fetching manifest of "+host+"/none:v1") {
		t.Fatalf("OpenSource of a missing image = %v", err)
	}
}

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []v1.Platform
		wantErr string
	}{
		{in: "", want: nil},
		{in: "linux/amd64", want: []v1.Platform{fx.AMD64}},
		{in: "linux/amd64, linux/arm64/v8", want: []v1.Platform{fx.AMD64, fx.ARM64}},
		{in: "linux/amd64,linux/amd64", want: []v1.Platform{fx.AMD64}},
		{in: "windows/amd64:10.0.17763", want: []v1.Platform{{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763"}}},
		{in: "linux", wantErr: "want os/arch"},
		{in: "linux/amd64,", wantErr: "want os/arch"},
		{in: "linux/arm/v7/x", wantErr: "too many slashes"},
	} {
		got, err := ParsePlatforms(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePlatforms(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.EqualFunc(got, tc.want, v1.Platform.Equals) {
			t.Errorf("ParsePlatforms(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
