package checker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	xattrs           map[string]string
	uid, gid         int
	major, minor     int64
	mtime            int64 // seconds added to the fixed mtime
}

func layerOf(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000+e.mtime, 0), Format: tar.FormatPAX,
			Uid: e.uid, Gid: e.gid, Devmajor: e.major, Devminor: e.minor}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func reg(name, body string, mode int64) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: mode}
}

// image builds a two-layer source; mutate tweaks the entries of the first
// layer to make a "tampered" variant.
func image(t testing.TB, tweak func([]entry) []entry, config ...func(*v1.ConfigFile)) v1.Image {
	big := strings.Repeat("chunk data ", 200000)
	l1 := []entry{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755}, reg("etc/conf", "a=1", 0o644),
		{name: "etc/x", body: "xattr", typ: tar.TypeReg, mode: 0o600, xattrs: map[string]string{"user.k": "v"}},
		reg("bin/tool", big, 0o755), {name: "bin/alias", link: "bin/tool", typ: tar.TypeLink},
		{name: "link", link: "etc/conf", typ: tar.TypeSymlink, mode: 0o777}, reg("gone", "x", 0o644),
		{name: "own/u", typ: tar.TypeReg, mode: 0o644, uid: 1000, gid: 1000, body: "u"},
		{name: "own/g", typ: tar.TypeReg, mode: 0o644, uid: 1000, gid: 1000, body: "g"},
		{name: "own/t", typ: tar.TypeReg, mode: 0o644, body: "t"},
		{name: "own/size", typ: tar.TypeReg, mode: 0o644, body: "four"},
		{name: "own/kind", typ: tar.TypeReg, mode: 0o644, body: "a file"},
		{name: "own/dev", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "own/ln", link: "own/u", typ: tar.TypeSymlink, mode: 0o777},
		{name: "own/h1", typ: tar.TypeReg, mode: 0o644, body: "same"},
		{name: "own/h2", link: "own/h1", typ: tar.TypeLink},
	}
	if tweak != nil {
		l1 = tweak(l1)
	}
	// A symlink whose header mode is 0644 is still 0777 once applied.
	// etc/ again in layer 2: a directory over a directory keeps its
	// children (image-spec, "Changesets").
	l2 := []entry{reg(".wh.gone", "", 0o644), {name: "etc/", typ: tar.TypeDir, mode: 0o755},
		reg("etc/new", "layer 2", 0o644), {name: "etc/sym644", link: "new", typ: tar.TypeSymlink, mode: 0o644}}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layerOf(t, l1...), layerOf(t, l2...))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Config.Cmd = []string{"/bin/tool"}
	for _, f := range config {
		f(cfg)
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t testing.TB, host, repo string, img v1.Image) string {
	t.Helper()
	ref, _ := name.ParseReference(host+"/"+repo, name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// fixture is a source image in a fresh registry and its Nydus conversion.
type fixture struct {
	host, storage string // registry address and storage root
	src, target   string // references of the source and the Nydus image
}

var ropts = registry.Options{PlainHTTP: true}

// converted pushes image(t, nil) to a fresh registry and converts it.
func converted(t *testing.T) fixture {
	t.Helper()
	host, storage := testenv.StartRegistryStorage(t)
	fx := fixture{host: host, storage: storage, src: push(t, host, "src/app:v1", image(t, nil)), target: host + "/nydus/app:v1"}
	if _, err := converter.Convert(context.Background(), converter.Options{
		Source: fx.src, Target: fx.target, SourceRegistry: ropts, TargetRegistry: ropts,
		Build: rafsbuild.Options{Compressor: rafs.CompressZstd},
	}); err != nil {
		t.Fatal(err)
	}
	return fx
}

// check runs checker.Check on target against source with opts' Mount and
// Logger, in a work directory of its own, and fails the test on an error.
func check(t *testing.T, target, source string, opts checker.Options) *checker.Report {
	t.Helper()
	opts.Target, opts.Source, opts.SourceRegistry, opts.TargetRegistry = target, source, ropts, ropts
	opts.WorkDir = t.TempDir()
	rep, err := checker.Check(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// pushTampered pushes a source that differs from image(t, nil) in mode,
// xattrs, content and presence, and returns it with the path → field of
// each difference a check against it must name.
func pushTampered(t *testing.T, host string) (string, map[string]string) {
	t.Helper()
	ref := push(t, host, "src/tampered:v1", image(t, func(es []entry) []entry {
		byName := map[string]*entry{}
		for i := range es {
			byName[es[i].name] = &es[i]
		}
		byName["etc/conf"].mode = 0o600
		byName["etc/x"].xattrs["user.extra"] = "added"
		byName["bin/tool"].body = byName["bin/tool"].body[:len(byName["bin/tool"].body)-1] + "!"
		byName["own/u"].uid = 1001
		byName["own/g"].gid = 1001
		byName["own/t"].mtime = 1
		byName["own/size"].body = "five!"
		*byName["own/kind"] = entry{name: "own/kind", typ: tar.TypeDir, mode: 0o755}
		byName["own/dev"].minor = 5
		byName["own/ln"].link = "own/g"
		*byName["own/h2"] = reg("own/h2", "same", 0o644)
		return append(es, reg("etc/only-in-source", "x", 0o644))
	}, func(c *v1.ConfigFile) { c.Config.Cmd = []string{"/tampered"} }))
	// Every field the checker compares, each tampered on its own path.
	return ref, map[string]string{
		"/etc/conf": "mode", "/etc/x": "xattr:user.extra", "/bin/tool": "content",
		"/bin/alias": "content", "/etc/only-in-source": "presence",
		"/own/u": "uid", "/own/g": "gid", "/own/t": "mtime", "/own/size": "size",
		"/own/kind": "type", "/own/dev": "rdev", "/own/ln": "target", "/own/h1": "hardlinks",
	}
}

// missing returns the entries of want that no problem of rep names.
func missing(rep *checker.Report, want map[string]string) map[string]string {
	left := maps.Clone(want)
	for _, p := range rep.Problems {
		if left[p.Path] == p.Field {
			delete(left, p.Path)
		}
	}
	return left
}

// flipBlobByte flips a byte inside the first chunk of the Nydus image's data
// blob, in the registry's storage.
func flipBlobByte(t *testing.T, fx fixture) {
	t.Helper()
	tref, _ := name.ParseReference(fx.target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	blob := filepath.Join(fx.storage, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data")
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[10] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// unreadable returns the paths rep reports as unreadable, with messages.
func unreadable(rep *checker.Report) map[string]string {
	out := map[string]string{}
	for _, p := range rep.Problems {
		if p.Rule == checker.RuleFilesystem && strings.HasPrefix(p.Message, "cannot read") {
			out[p.Path] = p.Message
		}
	}
	return out
}

// TestCheck: a converted image passes; compared with sources that differ
// in mode, content, presence and xattrs, every difference is named; bytes
// flipped in a stored blob make the affected files fail.
func TestCheck(t *testing.T) {
	fx := converted(t)
	if rep := check(t, fx.target, fx.src, checker.Options{}); !rep.OK || len(rep.Rules) != 3 || rep.Files < 7 || rep.Mounted {
		t.Fatalf("good image: ok=%v rules=%v files=%d mounted=%v problems=%v", rep.OK, rep.Rules, rep.Files, rep.Mounted, rep.Problems)
	}

	tampered, want := pushTampered(t, fx.host)
	rep := check(t, fx.target, tampered, checker.Options{})
	if rep.OK || len(missing(rep, want)) != 0 {
		t.Errorf("tampered source: missing %v among %v", missing(rep, want), rep.Problems)
	}
	// The runtime config differs; the hardlink problems name both groups,
	// "(none)" for a path in no group, in path order.
	var config bool
	var links []checker.Problem
	for _, p := range rep.Problems {
		config = config || p.Rule == checker.RuleManifest && strings.Contains(p.Message, "runtime config differs")
		if p.Field == "hardlinks" {
			links = append(links, p)
		}
	}
	if !config {
		t.Errorf("tampered Cmd not reported among %v", rep.Problems)
	}
	wantLinks := []checker.Problem{
		{Rule: checker.RuleFilesystem, Path: "/own/h1", Field: "hardlinks", Want: "(none)", Got: "/own/h1 /own/h2"},
		{Rule: checker.RuleFilesystem, Path: "/own/h2", Field: "hardlinks", Want: "(none)", Got: "/own/h1 /own/h2"},
	}
	if !slices.Equal(links, wantLinks) {
		t.Errorf("hardlink problems\n%v\nwant\n%v", links, wantLinks)
	}

	flipBlobByte(t, fx)
	rep = check(t, fx.target, fx.src, checker.Options{})
	bad := unreadable(rep)
	if rep.OK || bad["/bin/tool"] == "" || bad["/bin/alias"] == "" {
		t.Errorf("corrupted blob: ok=%v problems=%v", rep.OK, rep.Problems)
	}
}

// TestCheckBootstrapDiffID: the config's diff_id of the bootstrap layer
// must be the sha256 of its uncompressed tar (image-spec, "Layer DiffID").
func TestCheckBootstrapDiffID(t *testing.T) {
	fx := converted(t)
	tref, _ := name.ParseReference(fx.target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ids := cfg.RootFS.DiffIDs
	ids[len(ids)-1], _ = v1.NewHash("sha256:" + strings.Repeat("ab", 32))
	bad, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	target := push(t, fx.host, "nydus/app:bad-diffid", bad)
	rep := check(t, target, fx.src, checker.Options{})
	var found bool
	for _, p := range rep.Problems {
		found = found || p.Rule == checker.RuleManifest && strings.Contains(p.Message, "bootstrap layer diff_id sha256:abab")
	}
	if rep.OK || !found {
		t.Errorf("a wrong bootstrap diff_id not reported: %v", rep.Problems)
	}
}

// TestCheckBlobTableSize: a bootstrap whose blob table states a compressed
// size other than the blob layer's size in the manifest is reported. The
// bootstrap is edited in place (the blob table entry's compressed size field,
// docs/rafs-format.md §2.5) and re-packed into a bootstrap layer with the
// original descriptor's media type and annotations.
func TestCheckBlobTableSize(t *testing.T) {
	fx := converted(t)
	tref, _ := name.ParseReference(fx.target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	bootPath := filepath.Join(t.TempDir(), "boot")
	last := len(layers) - 1
	if _, err := packer.ExtractBootstrap(layers[last], bootPath); err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(bootPath)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := rafs.Open(bytes.NewReader(boot), int64(len(boot)))
	if err != nil {
		t.Fatal(err)
	}
	off := rd.Ext.BlobTableOffset
	e := rafs.UnmarshalBlobEntry(boot[off : off+rafs.BlobEntrySize])
	stated := e.CompressedSize
	e.CompressedSize += 4096
	e.MarshalTo(boot[off : off+rafs.BlobEntrySize])

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.RootFS.DiffIDs, cfg.History = nil, nil
	base, err := mutate.ConfigFile(mutate.ConfigMediaType(mutate.MediaType(empty.Image, mf.MediaType), mf.Config.MediaType), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var adds []mutate.Addendum
	for i, l := range layers[:last] {
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: mf.Layers[i].MediaType, Annotations: mf.Layers[i].Annotations})
	}
	adds = append(adds, mutate.Addendum{
		Layer:     layerOf(t, entry{name: "image/", typ: tar.TypeDir, mode: 0o755}, reg("image/image.boot", string(boot), 0o644)),
		MediaType: mf.Layers[last].MediaType, Annotations: mf.Layers[last].Annotations,
	})
	edited, err := mutate.Append(base, adds...)
	if err != nil {
		t.Fatal(err)
	}
	target := push(t, fx.host, "nydus/app:bad-blob-size", edited)
	rep := check(t, target, fx.src, checker.Options{})
	want := fmt.Sprintf("%d bytes in the blob table, %d in the manifest", stated+4096, stated)
	var found bool
	for _, p := range rep.Problems {
		found = found || p.Rule == checker.RuleBootstrap && strings.Contains(p.Message, want)
	}
	if rep.OK || !found {
		t.Errorf("blob table size %d against %d in the manifest not reported (%q): %v", stated+4096, stated, want, rep.Problems)
	}
}

// TestCheckNotNydus: an OCI image given as the target is reported as not a
// Nydus image, in one problem, and nothing more is checked.
func TestCheckNotNydus(t *testing.T) {
	host, _ := testenv.StartRegistryStorage(t)
	src := push(t, host, "src/app:v1", image(t, nil))
	rep := check(t, src, src, checker.Options{})
	if rep.OK || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Message, "not a Nydus image: none of its 2 layers") ||
		!slices.Equal(rep.Rules, []string{checker.RuleManifest}) {
		t.Errorf("plain OCI target: ok=%v rules=%v problems=%v", rep.OK, rep.Rules, rep.Problems)
	}
}
