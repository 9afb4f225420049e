package converter_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ggcrcompression "github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/extract"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/internal/treetar"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// hdr is one tar entry of a test layer.
type hdr struct {
	tar.Header
	body string
}

func reg(name, body string, mode int64) hdr {
	return hdr{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body))}, body}
}
func dirE(name string, mode int64) hdr {
	return hdr{Header: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}}
}
func typed(name string, typ byte, link string) hdr {
	return hdr{Header: tar.Header{Name: name, Typeflag: typ, Linkname: link, Mode: 0o777}}
}

func tarBytes(t testing.TB, format tar.Format, entries ...hdr) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		h.Format = format
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layerOf wraps a tar as a layer in the given compression and media type,
// with the right diff_id.
func layerOf(t testing.TB, data []byte, compression string, mt types.MediaType) v1.Layer {
	t.Helper()
	if compression == "none" {
		return static.NewLayer(data, mt)
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	opts := []tarball.LayerOption{tarball.WithMediaType(mt)}
	if compression == "zstd" {
		opts = append(opts, tarball.WithCompression(ggcrcompression.ZStd))
	}
	l, err := tarball.LayerFromOpener(opener, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sourceImage has three layers (gzip, zstd, uncompressed) covering the tar
// and overlay semantics: long names in PAX and GNU form, xattrs, devices,
// fifos, hardlinks, whiteouts, an opaque directory, type changes, a
// duplicate entry, implied parents.
//
// zstd selects a zstd second layer; umoci 0.4 cannot read zstd, so the
// flattened reference uses the same tars with gzip instead.
func sourceImage(t testing.TB, oci, zstd bool) v1.Image {
	long := strings.Repeat("long-name-", 20) + "end"
	xattrFile := reg("etc/xattrs", "with xattrs", 0o644)
	xattrFile.PAXRecords = map[string]string{"SCHILY.xattr.user.foo": "bar", "SCHILY.xattr.trusted.t": "x"}
	suid := reg("bin/suid", "setuid", 0o4755)
	owned := reg("home/user/file", "owned", 0o600)
	owned.Uid, owned.Gid = 1000, 4294967294
	chr := typed("dev/null", tar.TypeChar, "")
	chr.Devmajor, chr.Devminor, chr.Mode = 1, 3, 0o666
	blk := typed("dev/loop9", tar.TypeBlock, "")
	blk.Devmajor, blk.Devminor, blk.Mode = 7, 9, 0o660
	fifo := typed("run/fifo", tar.TypeFifo, "")
	fifo.Mode = 0o644
	big := strings.Repeat("0123456789abcdef", 300000) // 4.8 MB: several chunks, repeated later
	l1 := tarBytes(t, tar.FormatPAX,
		dirE("./", 0o755), dirE("./etc/", 0o755), reg("./etc/hostname", "base", 0o644), xattrFile,
		dirE("./bin/", 0o755), suid, dirE("./home/", 0o755), dirE("./home/user/", 0o700), owned,
		dirE("./dev/", 0o755), chr, blk, dirE("./run/", 0o755), fifo,
		reg("./"+long, "pax long name", 0o644), dirE("./data/", 0o755), reg("./data/big", big, 0o644),
		reg("./data/a", "hard", 0o644), typed("./data/b", tar.TypeLink, "./data/a"),
		dirE("./gone/", 0o755), reg("./gone/file", "x", 0o644),
		dirE("./opq/", 0o755), reg("./opq/old", "old", 0o644),
		reg("./f2d", "file", 0o644), dirE("./d2f/", 0o755), reg("./d2f/child", "c", 0o644),
		typed("./link", tar.TypeSymlink, "etc/hostname"), reg("./dup", "first", 0o644), reg("./dup", "second", 0o644))
	l2 := tarBytes(t, tar.FormatGNU,
		reg(".wh.gone", "", 0o644), reg("opq/.wh..wh..opq", "", 0o644), reg("opq/new", "new", 0o644),
		dirE("f2d/", 0o755), reg("f2d/inner", "inner", 0o644), reg("d2f", "now a file", 0o644),
		reg("etc/hostname", "upper", 0o644), dirE("gnu/", 0o755), reg("gnu/"+long, "gnu long name", 0o644),
		reg("implied/parents/file", "made up parents", 0o644), reg("data/copy", big, 0o644))
	// Linux gives symlinks mode 0777 whatever the header says; umoci does too.
	sym644 := typed("etc/sym644", tar.TypeSymlink, "new")
	sym644.Mode = 0o644
	l3 := tarBytes(t, tar.FormatUSTAR, reg("etc/.wh.xattrs", "", 0o644), reg("etc/new", "layer 3", 0o644), sym644)
	mtGz, mtZstd, mtTar := types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer
	if !oci {
		mtGz, mtZstd, mtTar = types.DockerLayer, types.DockerLayer, types.DockerUncompressedLayer
	}
	base := empty.Image
	if !oci {
		base = mutate.MediaType(base, types.DockerManifestSchema2)
		base = mutate.ConfigMediaType(base, types.DockerConfigJSON)
	} else {
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	second := layerOf(t, l2, "gzip", mtGz)
	if zstd {
		second = layerOf(t, l2, "zstd", mtZstd)
	}
	img, err := mutate.AppendLayers(base, layerOf(t, l1, "gzip", mtGz), second, layerOf(t, l3, "none", mtTar))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// mountNydus pulls a Nydus image, writes its blobs and bootstrap, and mounts
// the bootstrap with the kernel, the blob views as devices in blob-table
// order.
func mountNydus(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers[:len(layers)-1] {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, d.Hex))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(f, rc)
		rc.Close()
		f.Close()
	}
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	boot := filepath.Join(dir, "image.boot")
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("bootstrap layer has no %s: %v", packer.BootstrapName, err)
		}
		if h.Name == packer.BootstrapName {
			f, _ := os.Create(boot)
			io.Copy(f, tr)
			f.Close()
			break
		}
	}
	ex, err := extract.Open(boot, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	views, err := ex.BlobViews(context.Background(), filepath.Join(dir, "views"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.FsckEROFS(t, boot, views)
	return mounttest.EROFS(t, boot, views)
}

// impliedDirs are parents no tar entry describes: their mtime is not
// defined (umoci stamps the unpack time, Nydus 0), so it is not compared.
var impliedDirs = map[string]bool{"/implied": true, "/implied/parents": true}

func requireSame(t testing.TB, want, got string) {
	t.Helper()
	mounttest.RequireSame(t, want, got, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true},
		func(d treecmp.Diff) bool { return d.Field == treecmp.FieldMtime && impliedDirs[d.Path] })
}

// TestConvertRegistry converts a three-layer image (OCI and Docker media
// types) from a real registry (Debian's docker-registry) into it, checks the
// artifact with skopeo, and proves the filesystem: the kernel mounts the
// merged bootstrap over the blob views and the tree equals umoci's flattened
// source rootfs.
func TestConvertRegistry(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	host := testenv.StartRegistry(t)
	skopeo := testenv.RequireTool(t, "skopeo")
	for _, oci := range []bool{true, false} {
		kind := map[bool]string{true: "oci", false: "docker"}[oci]
		t.Run(kind, func(t *testing.T) {
			src := sourceImage(t, oci, oci)
			srcRef, _ := name.ParseReference(host+"/src/"+kind+":v1", name.Insecure)
			if err := remote.Write(srcRef, src); err != nil {
				t.Fatal(err)
			}
			target := host + "/nydus/" + kind + ":v1"
			reg := registry.Options{PlainHTTP: true}
			// The OCI variant dedups across layers (layer 2 repeats data of
			// layer 1), the Docker one converts each layer on its own.
			rep, err := converter.Convert(context.Background(), converter.Options{
				Source: srcRef.String(), Target: target, Build: rafsbuild.Options{Compressor: rafs.CompressNone},
				SourceRegistry: reg, TargetRegistry: reg, CrossLayerDedup: oci,
			})
			if err != nil {
				t.Fatal(err)
			}
			p := rep.Platforms[0]
			if len(p.Layers) != 3 || (p.Layers[1].DictChunks != 0) != oci {
				t.Errorf("report: %d layers, layer 2 cross-layer dedup %d (asked for: %v)", len(p.Layers), p.Layers[1].DictChunks, oci)
			}

			out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--raw", "docker://"+target).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo inspect: %v\n%s", err, out)
			}
			var m v1.Manifest
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			// Upstream's media types and annotation keys, written out as
			// nydus-snapshotter and nydusify spell them (not our constants):
			// every blob layer, and a gzip bootstrap layer last; OCI manifest
			// and config types whatever the source's, as upstream's --oci.
			bootMT := types.MediaType("application/vnd.oci.image.layer.v1.tar+gzip")
			if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
				t.Errorf("manifest %s, config %s; want OCI types", m.MediaType, m.Config.MediaType)
			}
			// skopeo reads it, not only as raw bytes (it refuses a docker v2
			// manifest holding Nydus blob layers).
			if out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "docker://"+target).CombinedOutput(); err != nil {
				t.Errorf("skopeo inspect: %v\n%s", err, out)
			}
			if len(m.Layers) != 4 {
				t.Fatalf("%d layers in the manifest as skopeo reads it:\n%s", len(m.Layers), out)
			}
			for i, l := range m.Layers[:3] {
				if l.MediaType != "application/vnd.oci.image.layer.nydus.blob.v1" ||
					l.Annotations["containerd.io/snapshot/nydus-blob"] != "true" {
					t.Errorf("blob layer %d: %s %v", i, l.MediaType, l.Annotations)
				}
			}
			if boot := m.Layers[3]; boot.MediaType != bootMT ||
				boot.Annotations["containerd.io/snapshot/nydus-bootstrap"] != "true" ||
				boot.Annotations["containerd.io/snapshot/nydus-fs-version"] != "6" {
				t.Errorf("bootstrap layer: %s %v", boot.MediaType, boot.Annotations)
			}
			if m.Annotations["containerd.io/snapshot/nydus-source-digest"] != p.SourceDigest.String() {
				t.Errorf("manifest annotations %v, want the source digest %s", m.Annotations, p.SourceDigest)
			}

			tref, _ := name.ParseReference(target, name.Insecure)
			img, err := remote.Image(tref)
			if err != nil {
				t.Fatal(err)
			}
			// umoci reads OCI manifests only; both variants carry the same layers.
			requireSame(t, fx.UmociUnpack(t, sourceImage(t, true, false)), mountNydus(t, img))
		})
	}
}

// TestConvertFailurePublishesNothing: a corrupt layer fails the conversion
// and the target tag never appears.
func TestConvertFailurePublishesNothing(t *testing.T) {
	host := testenv.StartRegistry(t)
	good := layerOf(t, tarBytes(t, tar.FormatPAX, reg("a", "a", 0o644)), "gzip", types.OCILayer)
	bad := static.NewLayer([]byte("\x1f\x8b not really gzip"), types.OCILayer)
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), good, bad)
	if err != nil {
		t.Fatal(err)
	}
	srcRef, _ := name.ParseReference(host+"/src/bad:v1", name.Insecure)
	if err := remote.Write(srcRef, img); err != nil {
		t.Fatal(err)
	}
	target := host + "/nydus/bad:v1"
	reg := registry.Options{PlainHTTP: true}
	_, err = converter.Convert(context.Background(), converter.Options{
		Source: srcRef.String(), Target: target, SourceRegistry: reg, TargetRegistry: reg,
		Platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}},
	})
	if err == nil || !strings.Contains(err.Error(), "layer 2 of 2") {
		t.Fatalf("converting a corrupt layer: %v", err)
	}
	tref, _ := name.ParseReference(target, name.Insecure)
	_, err = remote.Head(tref)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != 404 {
		t.Errorf("target manifest after a failed conversion: %v", err)
	}
}

// TestConvertOCILayoutToLayout converts without any registry: OCI layout in,
// OCI layout out, then mounts the result.
func TestConvertOCILayoutToLayout(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	dir := t.TempDir()
	src := sourceImage(t, true, true)
	lp, err := layout.Write(filepath.Join(dir, "src"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(src, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "app"})); err != nil {
		t.Fatal(err)
	}
	_, err = converter.Convert(context.Background(), converter.Options{
		Source: "oci:" + filepath.Join(dir, "src") + ":app", Target: "oci:" + filepath.Join(dir, "dst") + ":app-nydus",
		Build: rafsbuild.Options{Compressor: rafs.CompressZstd},
	})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "app-nydus" {
		t.Fatalf("target index %+v (%v)", im, err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	requireSame(t, fx.UmociUnpack(t, sourceImage(t, true, false)), mountNydus(t, img))
}

// TestConvertIndex converts a two-platform index with an attestation
// manifest: --all-platforms gives an index of two Nydus manifests, the
// attestation is skipped; one --platform gives a plain manifest.
func TestConvertIndex(t *testing.T) {
	host := testenv.StartRegistry(t)
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img, err := mutate.AppendLayers(img, layerOf(t, tarBytes(t, tar.FormatPAX, reg("arch", arch, 0o644)), "gzip", types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	att := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	adds = append(adds, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}})
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	srcRef, _ := name.ParseReference(host+"/src/multi:v1", name.Insecure)
	if err := remote.WriteIndex(srcRef, idx); err != nil {
		t.Fatal(err)
	}
	reg := registry.Options{PlainHTTP: true}
	rep, err := converter.Convert(context.Background(), converter.Options{
		Source: srcRef.String(), TargetSuffix: "-nydus", AllPlatforms: true, SourceRegistry: reg, TargetRegistry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Platforms) != 2 || len(rep.Skipped) != 1 || rep.MediaType != string(types.OCIImageIndex) {
		t.Fatalf("report: %d platforms, %d skipped, %s", len(rep.Platforms), len(rep.Skipped), rep.MediaType)
	}
	tref, _ := name.ParseReference(host+"/src/multi:v1-nydus", name.Insecure)
	got, err := remote.Index(tref)
	if err != nil {
		t.Fatal(err)
	}
	im, err := got.IndexManifest()
	if err != nil || len(im.Manifests) != 2 || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("target index %+v (%v)", im, err)
	}
	rep, err = converter.Convert(context.Background(), converter.Options{
		Source: srcRef.String(), Target: host + "/nydus/arm:v1", Platforms: []v1.Platform{{OS: "linux", Architecture: "arm64"}},
		SourceRegistry: reg, TargetRegistry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.MediaType != string(types.OCIManifestSchema1) || rep.Platforms[0].Platform != "linux/arm64" {
		t.Errorf("one platform: %s %s", rep.MediaType, rep.Platforms[0].Platform)
	}
}

// TestConvertDockerArchive converts a docker-save tarball into an OCI layout.
func TestConvertDockerArchive(t *testing.T) {
	dir := t.TempDir()
	src := sourceImage(t, false, false)
	tag, _ := name.NewTag("example.com/app:v1")
	archive := filepath.Join(dir, "app.tar")
	if err := tarball.WriteToFile(archive, tag, src); err != nil {
		t.Fatal(err)
	}
	rep, err := converter.Convert(context.Background(), converter.Options{
		Source: "docker-archive:" + archive, Target: "oci:" + filepath.Join(dir, "out") + ":app",
		Build: rafsbuild.Options{Compressor: rafs.CompressLZ4Block},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := rep.Platforms[0]; len(p.Layers) != 3 || p.DataBytes == 0 {
		t.Errorf("report %+v", p)
	}
	// Read the converted image back from the layout: three blob layers and
	// the bootstrap layer, and (root) the kernel mount of it equals umoci's
	// flattening of the layers the archive was written from.
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "app" {
		t.Fatalf("output index %+v", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 4 {
		t.Fatalf("converted image has %d layers, want 3 blobs and a bootstrap", len(layers))
	}
	t.Run("kernel", func(t *testing.T) {
		testenv.RequireRoot(t)
		testenv.RequireEROFS(t)
		// umoci reads OCI media types only: flatten the same tars as OCI.
		requireSame(t, fx.UmociUnpack(t, sourceImage(t, true, false)), mountNydus(t, img))
	})
}

// TestConvertRealistic converts a realistic layer, the Go installation tree
// (some 15k files, 245 MB), through an OCI layout and proves the kernel
// mount equals umoci's unpack of the source.
func TestConvertRealistic(t *testing.T) {
	if testing.Short() {
		t.Skip("converts and compares a 245 MB tree; skipped with -short")
	}
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	dir := t.TempDir()
	layerPath := filepath.Join(dir, "goroot.tar.gz")
	goroot, err := testenv.GoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := treetar.WriteGzipFile(layerPath, goroot); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	src, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "src"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(src, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "go"})); err != nil {
		t.Fatal(err)
	}
	rep, err := converter.Convert(context.Background(), converter.Options{
		Source: "oci:" + filepath.Join(dir, "src") + ":go", Target: "oci:" + filepath.Join(dir, "dst") + ":go",
		Build: rafsbuild.Options{Compressor: rafs.CompressZstd},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Platforms[0]
	t.Logf("Go tree layer: %d MB in, %d MB blob, %d chunks (%d deduplicated), convert %d ms",
		p.DataBytes>>20, p.BlobBytes>>20, p.Chunks, p.DedupChunks, rep.Timings.Convert)
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	requireSame(t, fx.UmociUnpack(t, src), mountNydus(t, img))
}

// TestConvertTruncatedLayer: a gzip or zstd layer missing the last bytes of
// its compressed stream (the gzip trailer: CRC-32 and size; the zstd frame
// checksum) fails the conversion with an error naming the layer, although
// every tar entry of it can still be read.
func TestConvertTruncatedLayer(t *testing.T) {
	data := tarBytes(t, tar.FormatPAX, reg("a", strings.Repeat("content ", 1000), 0o644))
	for _, compression := range []string{"gzip", "zstd"} {
		full, err := io.ReadAll(must(layerOf(t, data, compression, types.OCILayer).Compressed()))
		if err != nil {
			t.Fatal(err)
		}
		for _, cut := range []int{1, 4, 8, 12} {
			dir := t.TempDir()
			bad := static.NewLayer(full[:len(full)-cut], types.OCILayer)
			img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), bad)
			if err != nil {
				t.Fatal(err)
			}
			lp, err := layout.Write(filepath.Join(dir, "src"), empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "t"})); err != nil {
				t.Fatal(err)
			}
			digest, _ := bad.Digest()
			_, err = converter.Convert(context.Background(), converter.Options{
				Source: "oci:" + filepath.Join(dir, "src") + ":t", Target: "oci:" + filepath.Join(dir, "dst") + ":t",
			})
			if err == nil || !strings.Contains(err.Error(), "layer 1 of 1 ("+digest.String()+")") || !strings.Contains(err.Error(), "truncated") {
				t.Errorf("%s layer missing its last %d bytes: %v", compression, cut, err)
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
