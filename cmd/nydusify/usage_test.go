package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
)

// platformImage returns a one-layer image (manifest and layer media types of the docker
// family, or OCI) whose config declares linux/<arch>.
func platformImage(t *testing.T, arch string, docker bool) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "arch", Mode: 0o644, Size: int64(len(arch)), Typeflag: tar.TypeReg})
	tw.Write([]byte(arch))
	tw.Close()
	mt, cmt, lmt := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCIUncompressedLayer
	if docker {
		mt, cmt, lmt = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerUncompressedLayer
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), cmt), static.NewLayer(buf.Bytes(), lmt))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes img into a new OCI layout directory under tag and returns its
// "oci:DIR:TAG" reference.
func writeLayout(t *testing.T, dir, tag string, img v1.Image) string {
	t.Helper()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":" + tag
}

// wantFailure requires r to have failed with every one of wants in its stderr, and
// without a panic.
func wantFailure(t *testing.T, what string, r result, wants ...string) {
	t.Helper()
	if r.code == 0 || strings.Contains(r.stderr, "panic") {
		t.Errorf("%s: exit %d, stderr %q; want a failure", what, r.code, r.stderr)
		return
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("%s: stderr %q, want it to contain %q", what, r.stderr, w)
		}
	}
}

// TestPlatformOfSingleManifest: a platform a single-platform image is not is an error
// naming the platform it is, for convert, check and mount alike; its own platform, or
// none (the host default), converts it.
func TestPlatformOfSingleManifest(t *testing.T) {
	dir := t.TempDir()
	src := writeLayout(t, filepath.Join(dir, "src"), "v1", platformImage(t, "amd64", false))
	dst := "oci:" + filepath.Join(dir, "dst") + ":v1"

	r := run(t, nil, "convert", "--source", src, "--target", dst, "--platform", "linux/arm64")
	wantFailure(t, "convert --platform linux/arm64", r, "single-platform image for linux/amd64", "no manifest for linux/arm64")
	if r := run(t, nil, "convert", "--source", src, "--target", dst, "--platform", "linux/amd64"); r.code != 0 {
		t.Fatalf("convert --platform linux/amd64: %s", r.stderr)
	}

	r = run(t, nil, "check", "--target", dst, "--source", src, "--platform", "linux/arm64")
	wantFailure(t, "check --platform linux/arm64", r, "target: ", "single-platform image for linux/amd64", "no manifest for linux/arm64")
	if strings.Contains(r.stderr, "source") {
		t.Errorf("check names the target a source: %q", r.stderr)
	}
	if r := run(t, nil, "check", "--target", dst, "--source", src, "--platform", "linux/amd64"); r.code != 0 {
		t.Errorf("check --platform linux/amd64: %s", r.stderr)
	}

	r = run(t, nil, "mount", "--target", dst, "--mount-path", t.TempDir(), "--platform", "linux/arm64")
	wantFailure(t, "mount --platform linux/arm64", r, "target: ", "single-platform image for linux/amd64", "no manifest for linux/arm64")
	if strings.Contains(r.stderr, "source") {
		t.Errorf("mount names the target a source: %q", r.stderr)
	}
}

// runIn runs the binary as run does, in dir (if not "") with env added to the environment.
func runIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("running nydusify %v: did not start", args)
	}
	return result{stdout: so.String(), stderr: se.String(), code: cmd.ProcessState.ExitCode()}
}

// remoteRegistry serves ggcr's registry over plain HTTP on 127.0.0.1 with a forward proxy
// in front, so that the binary, run with the returned env, reaches it as
// "registry.example:PORT": a name that is not a loopback host, as a registry on another
// machine would be. The proxy tunnels CONNECT (HTTPS) to the plain-HTTP server, which
// answers the TLS handshake as an HTTP-only registry does, and forwards plain-HTTP requests.
// Go never proxies loopback hosts, so other registries of the test are reached directly.
func remoteRegistry(t *testing.T) (host string, env []string) {
	t.Helper()
	server := fx.StartRegistry(t, nil)
	_, port, _ := net.SplitHostPort(server)
	host = "registry.example:" + port
	fwd := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: server})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			fwd.ServeHTTP(w, r)
			return
		}
		up, err := net.Dial("tcp", server)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go func() { io.Copy(up, conn); up.Close() }()
		io.Copy(conn, up)
		conn.Close()
	}))
	t.Cleanup(proxy.Close)
	return host, []string{"HTTP_PROXY=" + proxy.URL, "HTTPS_PROXY=" + proxy.URL, "http_proxy=", "https_proxy=", "NO_PROXY=", "no_proxy="}
}

// countingRegistry serves ggcr's registry on 127.0.0.1 and counts the GET requests for
// the blob *layer names (set before the first request).
func countingRegistry(t *testing.T, layer *v1.Hash, gets *atomic.Int64) string {
	t.Helper()
	return fx.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) {
				gets.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	})
}

// TestTargetCheckedFirst: convert finds out that the target will not take the image before
// it reads a layer, and the error says how to fix it; the loopback rule is logged once.
func TestTargetCheckedFirst(t *testing.T) {
	var (
		layerGets atomic.Int64
		layer     v1.Hash
	)
	srcHost := countingRegistry(t, &layer, &layerGets)
	img := platformImage(t, "amd64", false)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if layer, err = layers[0].Digest(); err != nil {
		t.Fatal(err)
	}
	srcRef := srcHost + "/src/app:v1"
	if err := remote.Write(fx.MustRef(t, srcRef), img); err != nil {
		t.Fatal(err)
	}
	remoteHost, env := remoteRegistry(t)
	env = append(env, "DOCKER_CONFIG="+t.TempDir())

	var closed net.Listener
	closed, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedHost := closed.Addr().String()
	closed.Close()
	private := fx.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		})
	})

	for _, c := range []struct {
		target string
		wants  []string
	}{
		{remoteHost + "/dst:v1", []string{"http: server gave HTTP response to HTTPS client", "hint: the registry speaks plain HTTP, not HTTPS: add --plain-http"}},
		{closedHost + "/dst:v1", []string{"connection refused", "hint: nothing accepts connections there"}},
		{private + "/dst:v1", []string{"401", "hint: credentials come from the docker config", "docker login"}},
		{"oci-archive:" + filepath.Join(t.TempDir(), "out.tar"), []string{"oci-archive is not supported as a target yet"}},
	} {
		layerGets.Store(0)
		r := runIn(t, "", env, "convert", "--source", srcRef, "--target", c.target, "--push-retry-count", "0")
		wantFailure(t, "convert to "+c.target, r, append(c.wants, "target ")...)
		if n := layerGets.Load(); n != 0 {
			t.Errorf("convert to %s read the source layer %d times before failing on the target", c.target, n)
		}
		if n := strings.Count(r.stderr, "is on a loopback host: plain HTTP is allowed to it without --plain-http"); n != 1 {
			t.Errorf("convert to %s: the loopback rule is logged %d times, want once:\n%s", c.target, n, r.stderr)
		}
	}

	// With --plain-http the same remote target takes the image, and the loopback note is not
	// needed.
	r := runIn(t, "", env, "convert", "--source", srcRef, "--target", remoteHost+"/dst:v1", "--plain-http")
	if r.code != 0 {
		t.Fatalf("convert --plain-http to %s: %s", remoteHost, r.stderr)
	}
	if strings.Contains(r.stderr, "loopback") {
		t.Errorf("with --plain-http the loopback rule is still logged:\n%s", r.stderr)
	}
	if layerGets.Load() == 0 {
		t.Error("the successful conversion read no layer: the count proves nothing")
	}
}

// TestSourceMistakes: a path without its prefix, and an image that is already Nydus, get
// an answer that says what to do.
func TestSourceMistakes(t *testing.T) {
	dir := t.TempDir()
	writeLayout(t, filepath.Join(dir, "img"), "v1", platformImage(t, "amd64", false))
	r := runIn(t, dir, nil, "convert", "--source", "./img", "--target", "oci:out")
	wantFailure(t, "convert --source ./img", r, `"./img" is a local OCI image layout directory`, "use oci:./img")
	if strings.Contains(r.stderr, "lookup") || strings.Contains(r.stderr, "dial") {
		t.Errorf("convert --source ./img went to the network: %q", r.stderr)
	}
	r = runIn(t, dir, nil, "check", "--target", "./img")
	wantFailure(t, "check --target ./img", r, "target: ", "use oci:./img")

	if r := runIn(t, dir, nil, "convert", "--source", "oci:img:v1", "--target", "oci:nydus:v1"); r.code != 0 {
		t.Fatalf("convert: %s", r.stderr)
	}
	r = runIn(t, dir, nil, "convert", "--source", "oci:nydus:v1", "--target", "oci:again:v1")
	wantFailure(t, "converting a Nydus image", r, "source is already a Nydus image; nothing to convert")
	if strings.Contains(r.stderr, "tar") {
		t.Errorf("converting a Nydus image: %q", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "again")); !os.IsNotExist(err) {
		t.Errorf("converting a Nydus image left a target behind: %v", err)
	}
}

// TestConvertOCI: a Docker-typed source gives an image of OCI media types, which skopeo
// reads (it refuses a docker v2 manifest holding Nydus blob layers); --oci is accepted,
// --oci=false refused, and --docker-v2-format accepted with a deprecation warning.
func TestConvertOCI(t *testing.T) {
	skopeo := testenv.RequireTool(t, "skopeo")
	host := fx.StartRegistry(t, nil)
	src := host + "/docker/app:v1"
	if err := remote.Write(fx.MustRef(t, src), platformImage(t, "amd64", true)); err != nil {
		t.Fatal(err)
	}
	for i, extra := range [][]string{nil, {"--oci"}, {"--docker-v2-format"}} {
		target := host + "/nydus/app:v" + string(rune('1'+i))
		r := run(t, nil, append([]string{"convert", "--source", src, "--target", target}, extra...)...)
		if r.code != 0 {
			t.Fatalf("convert %v: %s", extra, r.stderr)
		}
		if deprecated := strings.Contains(r.stderr, "--docker-v2-format has been deprecated"); deprecated != (len(extra) == 1 && extra[0] == "--docker-v2-format") {
			t.Errorf("convert %v: deprecation warning %v:\n%s", extra, deprecated, r.stderr)
		}
		out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "docker://"+target).CombinedOutput()
		if err != nil {
			t.Errorf("convert %v: skopeo inspect: %v\n%s", extra, err, out)
		}
		raw, err := exec.Command(skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+target).Output()
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" ||
			len(m.Layers) != 2 || m.Layers[1].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("convert %v: manifest is not OCI through and through:\n%s", extra, raw)
		}
	}
	r := run(t, nil, "convert", "--source", src, "--target", host+"/nydus/app:no", "--oci=false")
	wantFailure(t, "convert --oci=false", r, "--oci=false is not supported", "skopeo")
	if r := run(t, nil, "convert", "--help"); strings.Contains(r.stdout, "docker-v2-format") || !strings.Contains(r.stdout, "--oci") {
		t.Errorf("convert --help shows the deprecated flag, or not --oci:\n%s", r.stdout)
	}
}

// TestMountHelpXattrs: mount --help states the xattr rule for both cases, as FlagConfig
// applies it (imagemount's TestFlagConfig holds each case).
func TestMountHelpXattrs(t *testing.T) {
	r := run(t, nil, "mount", "--help")
	for _, want := range []string{
		"without --config  shown, unless --hide-xattrs is given",
		`with --config     shown only when the file sets "enable_xattr": true`,
		"--hide-xattrs hides them, --hide-xattrs=false shows",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("mount --help lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestHumanSummaries: build, convert and check tell a person what they did, with units,
// on stdout; the JSON reports stay as they are. The tree holds two equal 1 MiB files: 2 MiB
// of data in two 1 MiB chunks, one a repeat.
func TestHumanSummaries(t *testing.T) {
	dir := t.TempDir()
	mib := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	for _, n := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(tree, n), mib, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, nil, "build", "--source-dir", tree, "--output-dir", filepath.Join(dir, "out"), "--name", "app")
	if r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	for _, want := range []string{
		"built " + filepath.Join(dir, "out", "app.meta") + " (RAFS v6, zstd, 1 MiB chunks, blake3 digests)",
		"tree       3 entries, 2 regular files, 2.0 MiB of file data",
		"dedup      1 of 2 chunks were repeats, stored once (1.0 MiB saved)",
		"MiB/s of file data",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("build summary lacks %q:\n%s", want, r.stdout)
		}
	}

	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, n := range []string{"a", "b"} {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(mib)), Typeflag: tar.TypeReg})
		tw.Write(mib)
	}
	tw.Close()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), static.NewLayer(layer.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	src := writeLayout(t, filepath.Join(dir, "src"), "v1", img)
	dst := "oci:" + filepath.Join(dir, "dst") + ":v1"
	report := filepath.Join(dir, "convert.json")
	r = run(t, nil, "convert", "--source", src, "--target", dst, "--output-json", report)
	if r.code != 0 {
		t.Fatalf("convert: %s", r.stderr)
	}
	for _, want := range []string{
		"converted " + src + " to " + dst,
		"(OCI image manifest)",
		"1 layer: 2.0 MiB of source layers (as stored) became ",
		"2.0 MiB of file data in 2 chunks, 1 of them repeats stored once",
		"MiB/s of file data",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("convert summary lacks %q:\n%s", want, r.stdout)
		}
	}
	data, err := os.ReadFile(report)
	if err != nil || !json.Valid(data) || !strings.Contains(string(data), `"dedup_chunks": 1`) {
		t.Errorf("--output-json: %s (%v)", data, err)
	}
	r = run(t, nil, "check", "--target", dst, "--source", src)
	if want := ": " + dst + " equals its source " + src + " (rules manifest, bootstrap, filesystem; 3 paths compared)"; r.code != 0 || !strings.Contains(r.stdout, "check passed") || !strings.Contains(r.stdout, want) {
		t.Errorf("check: exit %d, stdout %q, want %q", r.code, r.stdout, want)
	}
}
