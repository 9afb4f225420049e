package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/internal/fstree"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/internal/treetar"
	"github.com/nydus-go/nydusify/mountcheck"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
)

// s3Config is the --backend-config JSON (nydusd's s3 keys) for the bucket.
func s3Config(m *testenv.MinIO, prefixes ...string) string {
	c := map[string]string{"endpoint": m.Endpoint, "scheme": "http", "region": m.Region,
		"bucket_name": m.Bucket, "access_key_id": m.AccessKey, "access_key_secret": m.SecretKey}
	if len(prefixes) > 0 {
		c["object_prefix"] = prefixes[0]
	}
	if len(prefixes) > 1 {
		c["meta_prefix"] = prefixes[1]
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// layeredImage is a three-layer image: the fstree sample, then a layer with
// random (incompressible) data, then one that deletes a file of it and
// replaces another.
func layeredImage(t *testing.T) v1.Image {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	base, err := treetar.Image(src)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return string(b)
	}
	l2 := tarLayer(t, map[string]string{"extra/big": random(6 << 20), "extra/gone": "bye", "extra/kept": "v1"})
	l3 := tarLayer(t, map[string]string{"extra/.wh.gone": "", "extra/kept": "v2", "extra/more": random(300 << 10)})
	img, err := mutate.AppendLayers(base, l2, l3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "extra/", Mode: 0o755, Typeflag: tar.TypeDir})
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// skopeoRaw returns what skopeo (an independent client) reads of an image
// in a plain-HTTP registry: its manifest, or with --config its config.
func skopeoRaw(t *testing.T, ref string, config bool) ([]byte, error) {
	t.Helper()
	skopeo := testenv.RequireTool(t, "skopeo")
	args := []string{"inspect", "--raw", "--tls-verify=false"}
	if config {
		args = append(args, "--config")
	}
	return exec.Command(skopeo, append(args, "docker://"+ref)...).Output()
}

// requireNoSecret fails if the secret shows in any of the texts or in any
// file below the registry's storage.
func requireNoSecret(t *testing.T, secret, storage string, texts map[string]string) {
	t.Helper()
	for what, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("the secret key shows in %s", what)
		}
	}
	filepath.WalkDir(storage, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("the secret key is stored in the registry at %s", p)
			}
		}
		return nil
	})
}

// TestConvertS3RoundTrip is the storage-backend round trip through a real
// MinIO and a real registry: convert a three-layer image with its blobs to
// S3; skopeo sees only the bootstrap layer in the registry (one diff_id,
// one history entry) and s3cmd sees exactly the bootstrap's blobs under the
// object prefix, each hashing to its id; a FUSE mount reading the blobs from
// S3 equals umoci's unpacking of the source; check, reading the blobs from
// S3, passes; copy with S3 as the source backend gives a self-contained
// image whose mount, from the registry alone, equals the source too. The
// secret key shows nowhere: not in the output, the logs at
// debug level, --output-json, or anything the registry stores.
func TestConvertS3RoundTrip(t *testing.T) {
	testenv.RequireFUSE(t)
	host, storage := testenv.StartRegistryStorage(t)
	m := testenv.StartMinIO(t)
	img := layeredImage(t)
	srcRef, _ := name.ParseReference(host+"/src/app:v1", name.Insecure)
	if err := remote.Write(srcRef, img); err != nil {
		t.Fatal(err)
	}
	want := fx.UmociUnpack(t, img)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "backend.json")
	if err := os.WriteFile(cfgFile, []byte(s3Config(m, "nydus/blobs/")), 0o600); err != nil {
		t.Fatal(err)
	}
	target := host + "/nydus/app:v1"
	report := filepath.Join(dir, "report.json")
	conv := run(t, nil, "convert", "--log-level", "debug", "--source", srcRef.String(), "--target", target,
		"--backend-type", "s3", "--backend-config", s3Config(m, "nydus/blobs/"), "--output-json", report)
	if conv.code != 0 {
		t.Fatalf("convert: %s", conv.stderr)
	}
	if want := "backend    3 blobs stored in the storage backend (0 already there), e.g. s3://" + m.Bucket + "/nydus/blobs/"; !strings.Contains(conv.stdout, want) {
		t.Errorf("the summary does not say where the blobs went (%q):\n%s", want, conv.stdout)
	}

	manifest, err := skopeoRaw(t, target, false)
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var mf v1.Manifest
	if err := json.Unmarshal(manifest, &mf); err != nil {
		t.Fatal(err)
	}
	if len(mf.Layers) != 1 || mf.Layers[0].Annotations["containerd.io/snapshot/nydus-bootstrap"] != "true" ||
		mf.Layers[0].MediaType != types.OCILayer {
		t.Fatalf("manifest layers %+v, want only the bootstrap layer", mf.Layers)
	}
	config, err := skopeoRaw(t, target, true)
	if err != nil {
		t.Fatal(err)
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(config, &cf); err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != 1 || len(cf.History) != 1 || cf.History[0].Comment != "Nydus Bootstrap Layer" {
		t.Errorf("config: diff_ids %v, history %+v; want the bootstrap's alone", cf.RootFS.DiffIDs, cf.History)
	}

	var rep struct {
		Platforms []struct {
			Blobs        []string `json:"bootstrap_blob_table"`
			BackendBlobs []struct {
				Location string `json:"location"`
			} `json:"backend_blobs"`
		} `json:"platforms"`
	}
	repData, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(repData, &rep); err != nil || len(rep.Platforms) != 1 {
		t.Fatalf("report %s: %v", repData, err)
	}
	blobs := rep.Platforms[0].Blobs
	if len(blobs) != 3 || len(rep.Platforms[0].BackendBlobs) != 3 {
		t.Fatalf("report: %d blobs in the bootstrap, %d pushed; want 3 (one per layer)", len(blobs), len(rep.Platforms[0].BackendBlobs))
	}
	var wantKeys []string
	for _, id := range blobs {
		wantKeys = append(wantKeys, "nydus/blobs/"+id)
		got := filepath.Join(t.TempDir(), "blob")
		m.S3Cmd(t, "get", "s3://"+m.Bucket+"/nydus/blobs/"+id, got)
		b, err := os.ReadFile(got)
		if sum := sha256.Sum256(b); err != nil || hex.EncodeToString(sum[:]) != id {
			t.Errorf("object for blob %s does not hash to its id (%v)", id, err)
		}
	}
	if got := m.Objects(t, ""); !sameStrings(got, wantKeys) {
		t.Errorf("bucket holds %q, want %q", got, wantKeys)
	}

	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	var mountLog bytes.Buffer
	p := mounttest.StartProcess(t, binary, mnt, []string{"--log-level", "debug", "--target", target,
		"--backend-type", "s3", "--backend-config-file", cfgFile}, mountcheck.ProcessOptions{JSON: true, Log: &mountLog})
	if ready := p.Ready(); !strings.HasPrefix(fmt.Sprint(ready["backend"]), "s3:http://"+m.Endpoint+"/"+m.Bucket+"/nydus/blobs/") {
		t.Errorf("ready event %v, want the s3 backend", ready)
	}
	mounttest.RequireSame(t, want, mnt, cmpOpts, umociDropsEmptyXattrs)
	stop(t, p)

	chk := run(t, nil, "check", "--target", target, "--source", srcRef.String(),
		"--target-backend-type", "s3", "--target-backend-config-file", cfgFile)
	if chk.code != 0 || !strings.Contains(chk.stdout, "check passed") {
		t.Errorf("check: exit %d\n%s\n%s", chk.code, chk.stdout, chk.stderr)
	}
	// Without the backend, check cannot find the blobs: it must not pass.
	if r := run(t, nil, "check", "--target", target, "--source", srcRef.String()); r.code == 0 {
		t.Errorf("check without the backend passed:\n%s", r.stdout)
	}

	// copy takes the blobs out of S3 into a self-contained image; a mount
	// of the copy reads from the registry alone.
	copied := host + "/nydus/app:copy"
	cp := run(t, nil, "copy", "--source", target, "--target", copied,
		"--source-backend-type", "s3", "--source-backend-config-file", cfgFile)
	if cp.code != 0 {
		t.Fatalf("copy: %s", cp.stderr)
	}
	cmf, err := skopeoRaw(t, copied, false)
	if err != nil {
		t.Fatal(err)
	}
	var cm v1.Manifest
	json.Unmarshal(cmf, &cm)
	if len(cm.Layers) != 4 {
		t.Errorf("copy has %d layers, want 3 blobs and the bootstrap", len(cm.Layers))
	}
	cmnt := filepath.Join(dir, "copy-mnt")
	os.Mkdir(cmnt, 0o755)
	cpm := mounttest.StartProcess(t, binary, cmnt, []string{"--target", copied}, mountcheck.ProcessOptions{JSON: true})
	if ready := cpm.Ready(); !strings.HasPrefix(fmt.Sprint(ready["backend"]), "registry:") {
		t.Errorf("ready event %v, want the registry backend", ready)
	}
	mounttest.RequireSame(t, want, cmnt, cmpOpts, umociDropsEmptyXattrs)
	stop(t, cpm)

	requireNoSecret(t, m.SecretKey, storage, map[string]string{
		"convert output": conv.stdout + conv.stderr, "--output-json": string(repData),
		"mount log": mountLog.String(), "check output": chk.stdout + chk.stderr,
		"copy output": cp.stdout + cp.stderr, "manifest": string(manifest), "config": string(config),
	})
}

// umociDropsEmptyXattrs skips the one known difference between umoci's
// unpacking and the image: the sample tree's empty-valued xattr user.empty,
// which umoci does not set (PAX gives an empty record value the meaning
// "delete the keyword", and Go's archive/tar, which umoci reads with, drops
// it). The mount serves it, as the source directory has it.
func umociDropsEmptyXattrs(d treecmp.Diff) bool {
	return d.Field == "xattr:user.empty" && d.Want == "absent"
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestConvertS3Errors: wrong keys, a missing bucket and an unreachable
// endpoint make convert exit 1 with an error that names the bucket and the
// endpoint (never the secret), before anything reaches the registry.
func TestConvertS3Errors(t *testing.T) {
	host := testenv.StartRegistry(t)
	m := testenv.StartMinIO(t)
	srcRef, _ := name.ParseReference(host+"/src/small:v1", name.Insecure)
	if err := remote.Write(srcRef, mustImage(t, tarLayer(t, map[string]string{"extra/a": "a"}))); err != nil {
		t.Fatal(err)
	}
	closed := freeAddr(t)
	for _, c := range []struct {
		name string
		edit func(map[string]string)
		want []string
	}{
		{"wrong secret", func(c map[string]string) { c["access_key_secret"] = "wrong-secret-0123456789" },
			[]string{"access denied", `"nydus"`, m.Endpoint}},
		{"missing bucket", func(c map[string]string) { c["bucket_name"] = "nosuchbucket" },
			[]string{`"nosuchbucket"`, "does not exist", m.Endpoint}},
		{"unreachable endpoint", func(c map[string]string) { c["endpoint"] = closed },
			[]string{"unreachable", closed, `"nydus"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cfg map[string]string
			json.Unmarshal([]byte(s3Config(m)), &cfg)
			c.edit(cfg)
			b, _ := json.Marshal(cfg)
			target := host + "/nydus/small:" + strings.ReplaceAll(c.name, " ", "-")
			r := run(t, nil, "convert", "--source", srcRef.String(), "--target", target,
				"--backend-type", "s3", "--backend-config", string(b))
			if r.code != 1 {
				t.Fatalf("exit %d, want 1; stderr %s", r.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr+r.stdout, m.SecretKey) || strings.Contains(r.stderr+r.stdout, "wrong-secret-0123456789") {
				t.Errorf("the secret shows in the output:\n%s", r.stderr)
			}
			if _, err := skopeoRaw(t, target, false); err == nil {
				t.Errorf("the registry has %s after a failed convert", target)
			}
		})
	}
}

func mustImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestBuildBackendPushS3: build --backend-push puts the blob at
// object_prefix+id and the bootstrap at meta_prefix+NAME.meta, as s3cmd
// sees them; mounting that bootstrap with a nydusd JSON config whose
// backend is s3 gives back the source directory.
func TestBuildBackendPushS3(t *testing.T) {
	testenv.RequireFUSE(t)
	m := testenv.StartMinIO(t)
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	if err := fstree.Make(src, fstree.Options{Root: true}); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "build", "--source-dir", src, "--output-dir", out, "--name", "app", "--json",
		"--backend-push", "--backend-type", "s3", "--backend-config", s3Config(m, "blobs/", "meta/"))
	if r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	var res struct {
		Blobs []string `json:"blobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Blobs) != 1 {
		t.Fatalf("build --json: %v\n%s", err, r.stdout)
	}
	if got, want := m.Objects(t, ""), []string{"blobs/" + res.Blobs[0], "meta/app.meta"}; !sameStrings(got, want) {
		t.Fatalf("bucket holds %q, want %q", got, want)
	}
	boot := filepath.Join(dir, "fetched.meta")
	m.S3Cmd(t, "get", "s3://"+m.Bucket+"/meta/app.meta", boot)
	if a, b := readFile(t, boot), readFile(t, filepath.Join(out, "app.meta")); !bytes.Equal(a, b) {
		t.Fatal("the bootstrap in S3 differs from the one built")
	}
	if strings.Contains(r.stdout+r.stderr, m.SecretKey) {
		t.Error("the secret shows in build's output")
	}

	var cfg map[string]any
	json.Unmarshal([]byte(s3Config(m, "blobs/")), &cfg)
	conf, _ := json.Marshal(map[string]any{
		"device": map[string]any{"backend": map[string]any{"type": "s3", "config": cfg},
			"cache": map[string]any{"type": "blobcache", "config": map[string]any{"work_dir": filepath.Join(dir, "cache")}}},
		"mode": "direct", "enable_xattr": true,
	})
	cfgPath := filepath.Join(dir, "nydusd.json")
	os.WriteFile(cfgPath, conf, 0o600)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	p := mounttest.StartProcess(t, binary, mnt, []string{"--config", cfgPath, "--bootstrap", boot},
		mountcheck.ProcessOptions{JSON: true})
	p.Ready()
	mounttest.RequireSame(t, src, mnt, cmpOpts)
	stop(t, p)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
