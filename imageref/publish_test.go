package imageref

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/registry"
)

// Publish hands the artifact to the place the target names, and what it wrote opens again
// through OpenSource.
func TestPublish(t *testing.T) {
	ctx := context.Background()
	img := fx.NewImage(t, fx.AMD64, true, fx.Gzip)
	want, _ := img.Digest()
	host := fx.StartRegistry(t, nil)
	for _, target := range []Ref{
		{Kind: Registry, Name: host + "/dst:v1"},
		{Kind: OCILayout, Path: t.TempDir(), Name: "v1"},
	} {
		desc, err := Publish(ctx, target, img, registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		src, err := OpenSource(ctx, target, registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != want || src.Digest() != want {
			t.Errorf("%s: published %s, reads back %s, want %s", target, desc.Digest, src.Digest(), want)
		}
	}
	if _, err := remote.Image(fx.MustRef(t, host+"/dst:v1")); err != nil {
		t.Errorf("ggcr cannot pull the published image: %v", err)
	}
}

func TestPublishErrors(t *testing.T) {
	img := fx.NewImage(t, fx.AMD64, true, fx.Gzip)
	for _, tc := range []struct {
		name    string
		target  Ref
		a       artifact
		wantErr string
	}{
		{"oci archive", Ref{Kind: OCIArchive, Path: "x.tar"}, img, "oci-archive is not supported as a target yet"},
		{"docker archive", Ref{Kind: DockerArchive, Path: "x.tar"}, img, "docker-archive is not supported as a target yet"},
		{"nothing", Ref{Kind: OCILayout, Path: t.TempDir()}, nil, "nothing to publish"},
	} {
		_, err := Publish(context.Background(), tc.target, tc.a, registry.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "publishing to ") {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestCheckTarget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	fx.WriteFile(t, file, []byte("x"))
	host := fx.StartRegistry(t, nil)
	for _, target := range []Ref{
		{Kind: Registry, Name: host + "/dst:v1"},
		{Kind: OCILayout, Path: dir},
		{Kind: OCILayout, Path: filepath.Join(dir, "new", "deeper")},
	} {
		if err := CheckTarget(ctx, target, registry.Options{}); err != nil {
			t.Errorf("CheckTarget(%s): %v", target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("CheckTarget created the layout directory: %v", err)
	}
	for _, tc := range []struct {
		target  Ref
		wantErr string
	}{
		{Ref{Kind: OCILayout, Path: file}, "is not a directory"},
		{Ref{Kind: OCILayout, Path: filepath.Join(file, "below")}, "not a directory"},
		{Ref{Kind: OCIArchive, Path: "x.tar"}, "oci-archive is not supported as a target yet"},
		{Ref{Kind: Registry, Name: "127.0.0.1:1/dst:v1"}, "connection refused"},
	} {
		err := CheckTarget(ctx, tc.target, registry.Options{Retries: -1})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "target ") {
			t.Errorf("CheckTarget(%s) = %v, want error containing %q", tc.target, err, tc.wantErr)
		}
	}
	if os.Geteuid() == 0 {
		return // root writes anywhere
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := CheckTarget(ctx, Ref{Kind: OCILayout, Path: filepath.Join(ro, "x")}, registry.Options{}); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("CheckTarget below a read-only directory = %v", err)
	}
}
