package checker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
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
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	xattrs           map[string]string
}

func layerOf(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
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
func image(t testing.TB, tweak func([]entry) []entry) v1.Image {
	big := strings.Repeat("chunk data ", 200000)
	l1 := []entry{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755}, reg("etc/conf", "a=1", 0o644),
		{name: "etc/x", body: "xattr", typ: tar.TypeReg, mode: 0o600, xattrs: map[string]string{"user.k": "v"}},
		reg("bin/tool", big, 0o755), {name: "bin/alias", link: "bin/tool", typ: tar.TypeLink},
		{name: "link", link: "etc/conf", typ: tar.TypeSymlink, mode: 0o777}, reg("gone", "x", 0o644),
	}
	if tweak != nil {
		l1 = tweak(l1)
	}
	l2 := []entry{reg(".wh.gone", "", 0o644), reg("etc/new", "layer 2", 0o644)}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layerOf(t, l1...), layerOf(t, l2...))
	if err != nil {
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

// TestCheck: a converted image passes; compared with sources that differ
// in mode, content, presence and xattrs, every difference is named; bytes
// flipped in a stored blob make the affected file fail.
func TestCheck(t *testing.T) {
	host, storage := testenv.StartRegistryStorage(t)
	ropts := imageref.RegistryOptions{PlainHTTP: true}
	src := push(t, host, "src/app:v1", image(t, nil))
	target := host + "/nydus/app:v1"
	if _, err := converter.Convert(context.Background(), converter.Options{
		Source: src, Target: target, SourceRegistry: ropts, TargetRegistry: ropts,
		Build: rafsbuild.Options{Compressor: rafs.CompressZstd},
	}); err != nil {
		t.Fatal(err)
	}
	check := func(source string) *checker.Report {
		t.Helper()
		rep, err := checker.Check(context.Background(), checker.Options{
			Target: target, Source: source, SourceRegistry: ropts, TargetRegistry: ropts, WorkDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := check(src); !rep.OK || len(rep.Rules) != 3 || rep.Files < 7 {
		t.Fatalf("good image: ok=%v rules=%v files=%d problems=%v", rep.OK, rep.Rules, rep.Files, rep.Problems)
	}

	tampered := push(t, host, "src/tampered:v1", image(t, func(es []entry) []entry {
		es[1].mode = 0o600                   // etc/conf: mode
		es[2].xattrs["user.extra"] = "added" // etc/x: extra xattr
		es[3].body = es[3].body[:len(es[3].body)-1] + "!"
		return append(es, reg("etc/only-in-source", "x", 0o644))
	}))
	rep := check(tampered)
	want := map[string]string{
		"/etc/conf": "mode", "/etc/x": "xattr:user.extra", "/bin/tool": "content",
		"/bin/alias": "content", "/etc/only-in-source": "presence",
	}
	for _, p := range rep.Problems {
		if want[p.Path] == p.Field {
			delete(want, p.Path)
		}
	}
	if rep.OK || len(want) != 0 {
		t.Errorf("tampered source: missing %v among %v", want, rep.Problems)
	}

	// Flip a byte inside the first chunk of the stored data blob.
	tref, _ := name.ParseReference(target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	blob := filepath.Join(storage, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data")
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[10] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rep = check(src)
	named := false
	for _, p := range rep.Problems {
		if p.Rule == checker.RuleFilesystem && strings.HasPrefix(p.Message, "cannot read content") {
			named = true
		}
	}
	if rep.OK || !named {
		t.Errorf("corrupted blob: ok=%v problems=%v", rep.OK, rep.Problems)
	}
}
