package converter_test

import (
	"archive/tar"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/converter"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

func symlinkE(name, target string) hdr { return typed(name, tar.TypeSymlink, target) }
func hardlinkE(name, target string) hdr {
	h := typed(name, tar.TypeLink, target)
	h.Mode = 0o644
	return h
}

// stackImage is an OCI image of the given layers, gzip compressed.
func stackImage(t testing.TB, layers ...[]hdr) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, entries := range layers {
		var err error
		if img, err = mutate.AppendLayers(img, layerOf(t, tarBytes(t, tar.FormatPAX, entries...), "gzip", types.OCILayer)); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// TestConvertSymlinkParents converts stacks whose entries, whiteouts and
// hardlinks reach their place through symlinks, and compares the kernel
// mount of each result with umoci's unpack of the source (umoci, like
// containerd, writes through the link within the root); check must pass on
// each. Stacks whose result appliers cannot agree on, or that containerd
// refuses, must fail to convert, naming the path.
func TestConvertSymlinkParents(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	etc := []hdr{dirE("etc/", 0o755), reg("etc/passwd", "root:x:0:0", 0o644), reg("etc/keep", "keep", 0o644)}
	cases := []struct {
		name   string
		layers [][]hdr
		// want lists paths the judge must show as "f:content", "l:target",
		// "d" or "-" (absent): the case is about them, so they are
		// asserted even if umoci and the converter agreed on a mistake.
		want map[string]string
		// implied are directories no entry describes (their mtime is the
		// unpack time for umoci, 0 for Nydus); written are lower-layer
		// directories a later layer writes into through a symlink (their
		// mtime is the unpack time for umoci, which restores the mtime of
		// the parent it names, not of the one it writes into, and for
		// containerd, which restores none; the tar's for Nydus).
		implied, written []string
		err              string // a substring of the conversion error, "" to succeed
	}{
		{name: "absolute link in a lower layer",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc")), {reg("a/passwd", "new", 0o644)}},
			want:   map[string]string{"etc/passwd": "f:new", "a": "l:/etc"}},
		{name: "absolute link in the same layer",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc"), reg("a/passwd", "new", 0o644))},
			want:   map[string]string{"etc/passwd": "f:new", "a": "l:/etc"}},
		{name: "relative link",
			layers: [][]hdr{{dirE("usr/", 0o755), dirE("usr/lib/", 0o755), symlinkE("lib", "usr/lib")},
				{reg("lib/libc.so", "libc", 0o755), reg("lib/sub/x", "x", 0o644)}},
			want:    map[string]string{"usr/lib/libc.so": "f:libc", "usr/lib/sub/x": "f:x", "lib": "l:usr/lib"},
			implied: []string{"/usr/lib/sub"}, written: []string{"/usr/lib"}},
		{name: "relative link with dot-dot",
			layers: [][]hdr{{dirE("usr/", 0o755), dirE("usr/bin/", 0o755), dirE("bin/", 0o755), symlinkE("usr/sbin", "../bin"),
				symlinkE("usr/local", "../usr/bin")},
				{reg("usr/sbin/tool", "tool", 0o755), reg("usr/local/other", "other", 0o755)}},
			want:    map[string]string{"bin/tool": "f:tool", "usr/bin/other": "f:other", "usr/sbin": "l:../bin"},
			written: []string{"/bin", "/usr/bin"}},
		{name: "links leading outside the root",
			layers: [][]hdr{{symlinkE("up", "../../.."), symlinkE("abs", "/../../srv/data"), symlinkE("mid", "x/../../../opt")},
				{reg("up/f", "clamped", 0o644), reg("abs/g", "rebased", 0o644), reg("mid/h", "lexical", 0o644)}},
			want:    map[string]string{"f": "f:clamped", "srv/data/g": "f:rebased", "opt/h": "f:lexical", "up": "l:../../.."},
			implied: []string{"/srv", "/srv/data", "/opt"}},
		{name: "chain of links across layers",
			layers: [][]hdr{{symlinkE("a", "b"), dirE("c/", 0o755)}, {symlinkE("b", "c/d")},
				{reg("a/f", "through two links", 0o644)}},
			want:    map[string]string{"c/d/f": "f:through two links", "a": "l:b", "b": "l:c/d"},
			implied: []string{"/c/d"}, written: []string{"/c"}},
		{name: "link to a link in the same layer",
			layers: [][]hdr{{dirE("real/", 0o755), symlinkE("l2", "real"), symlinkE("l1", "/l2"), reg("l1/f", "f", 0o644)}},
			want:   map[string]string{"real/f": "f:f"}},
		{name: "whiteout through a symlinked parent",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc")), {reg("a/.wh.passwd", "", 0o644)}},
			want:   map[string]string{"etc/passwd": "-", "etc/keep": "f:keep", "a": "l:/etc"}},
		{name: "opaque directory through a symlinked parent",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc")), {reg("a/.wh..wh..opq", "", 0o644), reg("a/new", "new", 0o644)}},
			want:   map[string]string{"etc/passwd": "-", "etc/keep": "-", "etc/new": "f:new"}},
		{name: "hardlink through a symlinked parent",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc")),
				{reg("a/shadow", "secret", 0o640), hardlinkE("a/gshadow", "a/shadow"), hardlinkE("etc/top", "a/shadow")}},
			want:    map[string]string{"etc/shadow": "f:secret", "etc/gshadow": "f:secret", "etc/top": "f:secret"},
			written: []string{"/etc"}},
		// The layer is built without the layers below, so it cannot know
		// that a/shadow is etc/shadow; containerd links them.
		{name: "hardlink naming the real path of a file written through a lower link",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc")), {reg("a/shadow", "secret", 0o640), hardlinkE("top", "etc/shadow")}},
			err:    `hardlink top points to "etc/shadow", which is not earlier in this layer`},
		{name: "hardlink target named through a link of the same layer",
			layers: [][]hdr{{dirE("etc/", 0o755), symlinkE("a", "/etc"), reg("etc/f", "f", 0o644), hardlinkE("h", "a/f")}},
			want:   map[string]string{"h": "f:f", "etc/f": "f:f"}},
		// containerd removes an entry named by a whiteout later in its own
		// layer; image-spec and umoci keep it, and so do we.
		{name: "whiteouts and opaque markers after entries of their own layer",
			layers: [][]hdr{{reg("x", "lower", 0o644), dirE("o/", 0o755), reg("o/old", "old", 0o644)},
				{reg("x", "upper", 0o644), reg(".wh.x", "", 0o644), reg("o/new", "new", 0o644), reg("o/.wh..wh..opq", "", 0o644)}},
			want:    map[string]string{"x": "f:upper", "o/new": "f:new", "o/old": "-"},
			written: []string{"/o"}},
		{name: "directory replaces a lower symlink",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc")), {dirE("a/", 0o700), reg("a/passwd", "own", 0o644)}},
			want:   map[string]string{"a": "d", "a/passwd": "f:own", "etc/passwd": "f:root:x:0:0"}},
		{name: "symlink replaces a lower directory and a file replaces it",
			layers: [][]hdr{{dirE("d/", 0o755), reg("d/f", "f", 0o644), reg("s", "file", 0o644)},
				{symlinkE("d", "/etc"), dirE("s/", 0o755)}},
			want: map[string]string{"d": "l:/etc", "d/f": "-", "s": "d"}},
		{name: "hardlink to a directory",
			layers: [][]hdr{{dirE("d/", 0o755), hardlinkE("h", "d")}},
			err:    `hardlink "h" to "d": unsupported input: hardlink target is directory "d"`},
		{name: "file used as a parent",
			layers: [][]hdr{{reg("f", "file", 0o644)}, {reg("f/x", "x", 0o644)}},
			err:    "/f holds entries of this layer but is a regular file"},
		{name: "dot-dot out of a directory that is a symlink below",
			layers: [][]hdr{{dirE("q/", 0o755), dirE("q/r/", 0o755), symlinkE("p", "q/r")},
				{symlinkE("p/a", "../etc"), reg("p/a/passwd", "x", 0o644)}},
			err: "steps out of /p"},
		{name: "whiteout and entries below it without a directory entry",
			layers: [][]hdr{append(etc, symlinkE("a", "/etc")), {reg("a/x", "x", 0o644), reg(".wh.a", "", 0o644)}},
			err:    "/a has a whiteout and entries below it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := stackImage(t, tc.layers...)
			lp, err := layout.Write(filepath.Join(dir, "src"), empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := lp.AppendImage(src, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "app"})); err != nil {
				t.Fatal(err)
			}
			source, target := "oci:"+filepath.Join(dir, "src")+":app", "oci:"+filepath.Join(dir, "dst")+":app"
			_, err = converter.Convert(context.Background(), converter.Options{
				Source: source, Target: target, Build: rafsbuild.Options{Compressor: rafs.CompressZstd},
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("convert: %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			judge := fx.UmociUnpack(t, src)
			got := listTree(t, judge)
			for p, w := range tc.want {
				if got[p] != w && !(w == "-" && got[p] == "") {
					t.Errorf("umoci unpacks %s as %q, the case expects %q", p, got[p], w)
				}
			}
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
			implied := map[string]bool{}
			for _, p := range append(tc.implied, tc.written...) {
				implied[p] = true
			}
			mounttest.RequireSame(t, judge, mountNydus(t, img), treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true},
				func(d treecmp.Diff) bool { return d.Field == treecmp.FieldMtime && implied[d.Path] })

			rep, err := checker.Check(context.Background(), checker.Options{Target: target, Source: source, WorkDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Problems {
				t.Errorf("check: %s", p)
			}
		})
	}
}

// listTree maps every path under root to "d", "l:target" or "f:content".
func listTree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case rel == ".":
		case d.IsDir():
			out[rel] = "d"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "l:" + target
			return err
		default:
			b, err := os.ReadFile(p)
			out[rel] = "f:" + string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
