package imageref

import (
	"path/filepath"
	"strings"
	"testing"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Ref
		wantErr string
	}{
		{in: "oci:/tmp/layout", want: Ref{Kind: OCILayout, Path: "/tmp/layout"}},
		{in: "oci:layout:v1", want: Ref{Kind: OCILayout, Path: "layout", Name: "v1"}},
		{in: "oci-archive:/a/img.tar:latest", want: Ref{Kind: OCIArchive, Path: "/a/img.tar", Name: "latest"}},
		{in: "oci-archive:img.tar", want: Ref{Kind: OCIArchive, Path: "img.tar"}},
		{in: "docker-archive:save.tar", want: Ref{Kind: DockerArchive, Path: "save.tar"}},
		{in: "docker-archive:save.tar:busybox:1.36", want: Ref{Kind: DockerArchive, Path: "save.tar", Name: "busybox:1.36"}},
		{in: "docker-archive:save.tar:localhost:5000/app:v2", want: Ref{Kind: DockerArchive, Path: "save.tar", Name: "localhost:5000/app:v2"}},
		{in: "ubuntu", want: Ref{Kind: Registry, Name: "ubuntu"}},
		{in: "localhost:5000/repo/app:v1", want: Ref{Kind: Registry, Name: "localhost:5000/repo/app:v1"}},
		{in: "ghcr.io/a/b@sha256:" + strings.Repeat("ab", 32), want: Ref{Kind: Registry, Name: "ghcr.io/a/b@sha256:" + strings.Repeat("ab", 32)}},

		{in: "oci:", wantErr: "empty oci path"},
		{in: "oci::tag", wantErr: "empty oci path"},
		{in: "oci-archive:", wantErr: "empty oci-archive path"},
		{in: "docker-archive:", wantErr: "empty docker-archive path"},
		{in: "oci:dir:", wantErr: "empty name after ':'"},
		{in: "docker-archive:f.tar:Bad Name", wantErr: "image name in docker archive"},
		{in: "", wantErr: "empty"},
		{in: "UPPER/case", wantErr: "parsing image reference"},
		{in: "repo:bad tag", wantErr: "parsing image reference"},
		{in: "https://ghcr.io/a/b", wantErr: "URL scheme"},
		{in: "repo@sha256:short", wantErr: "parsing image reference"},
	} {
		got, err := Parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		// String gives back what Parse accepts.
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Registry: "registry", OCILayout: "oci", OCIArchive: "oci-archive", DockerArchive: "docker-archive", Kind(9): "Kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestWithSuffix(t *testing.T) {
	for _, tc := range []struct {
		in, suffix, want, wantErr string
	}{
		{in: "ubuntu", suffix: "-nydus", want: "ubuntu:latest-nydus"},
		{in: "ubuntu:22.04", suffix: "-nydus", want: "ubuntu:22.04-nydus"},
		{in: "localhost:5000/app", suffix: "_n", want: "localhost:5000/app:latest_n"},
		{in: "localhost:5000/app:v1", suffix: "_n", want: "localhost:5000/app:v1_n"},
		{in: "app@sha256:" + strings.Repeat("0", 64), suffix: "-nydus", wantErr: "digest references"},
		{in: "app:v1@sha256:" + strings.Repeat("0", 64), suffix: "-nydus", wantErr: "digest references"},
		{in: "oci:dir:v1", suffix: "-nydus", wantErr: "only registry references"},
		{in: "app", suffix: "", wantErr: "empty suffix"},
		{in: "app", suffix: "/x", wantErr: "adding tag suffix"},
		{in: "app:" + strings.Repeat("t", 125), suffix: "-nydus", wantErr: "adding tag suffix"},
	} {
		r, err := Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		got, err := r.WithSuffix(tc.suffix)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q.WithSuffix(%q) = %v, %v; want error containing %q", tc.in, tc.suffix, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != (Ref{Kind: Registry, Name: tc.want}) {
			t.Errorf("%q.WithSuffix(%q) = %+v, %v; want %q", tc.in, tc.suffix, got, err, tc.want)
		}
	}
}

// A reference written as a path says what is there and which prefix reads it.
func TestParseLocalPath(t *testing.T) {
	dir, _, _ := fx.WriteLayout(t)
	ociTar := filepath.Join(t.TempDir(), "oci.tar")
	fx.TarDir(t, dir, ociTar)
	dockerTar := filepath.Join(t.TempDir(), "docker.tar")
	fx.WriteFile(t, dockerTar, fx.Tar(t, map[string]string{"manifest.json": "[]"}))
	bothTar := filepath.Join(t.TempDir(), "both.tar")
	fx.WriteFile(t, bothTar, fx.Tar(t, map[string]string{"manifest.json": "[]", "index.json": "{}"}))
	otherTar := filepath.Join(t.TempDir(), "other.tar")
	fx.WriteFile(t, otherTar, fx.Tar(t, map[string]string{"hello": "world"}))
	notTar := filepath.Join(t.TempDir(), "notes.txt")
	fx.WriteFile(t, notTar, []byte("not a tar"))
	emptyDir := t.TempDir()
	t.Chdir(filepath.Dir(dir))
	rel := "./" + filepath.Base(dir)
	for in, want := range map[string]string{
		rel:         "is a local OCI image layout directory, not an image reference: use oci:" + rel,
		dir:         "use oci:" + dir,
		ociTar:      "is a local OCI archive, not an image reference: use oci-archive:" + ociTar,
		dockerTar:   "is a local docker save archive, not an image reference: use docker-archive:" + dockerTar,
		bothTar:     "use oci-archive:" + bothTar + " or docker-archive:" + bothTar,
		otherTar:    "neither an OCI archive (no index.json) nor a docker save archive",
		notTar:      "is a local file, but not an image archive",
		emptyDir:    "is a local directory but not an OCI image layout (it has no index.json)",
		"./missing": `"./missing" is written as a local path, but stat ./missing: no such file or directory`,
		".":         "is a local directory",
		"~/img":     "is written as a local path",
		"../" + filepath.Base(filepath.Dir(dir)) + "/" + filepath.Base(dir): "use oci:../",
		// The prefix forgotten before a layout and its tag: not a Docker Hub image.
		filepath.Base(dir) + ":v1": "names the local OCI image layout " + filepath.Base(dir) + " and its tag v1, not a registry image: use oci:" + filepath.Base(dir) + ":v1",
		dockerTar + ":app:1":       "use docker-archive:" + dockerTar + ":app:1",
	} {
		_, err := Parse(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
	// A name that is also a local file stays a registry reference: "ubuntu" is a repository.
	fx.WriteFile(t, "ubuntu", []byte("x"))
	if r, err := Parse("ubuntu"); err != nil || r.Kind != Registry {
		t.Errorf("Parse(ubuntu) = %+v, %v; want the registry reference", r, err)
	}
}

// A target written as a path gets the prefix that writes a layout there,
// whether or not the path exists yet; other targets parse as Parse does.
func TestParseTarget(t *testing.T) {
	dir, _, _ := fx.WriteLayout(t)
	for _, in := range []string{"./out", "/tmp/no/such/dir", dir, "~/img"} {
		_, err := ParseTarget(in)
		want := "to write an OCI image layout there, use oci:" + in
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTarget(%q) = %v, want error containing %q", in, err, want)
		}
	}
	for in, want := range map[string]Ref{
		"oci:./out:v1":         {Kind: OCILayout, Path: "./out", Name: "v1"},
		"localhost:5000/app:1": {Kind: Registry, Name: "localhost:5000/app:1"},
	} {
		if got, err := ParseTarget(in); err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
}
