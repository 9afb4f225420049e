package checker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type tent struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tf(name, body string) tent { return tent{name: name, body: body, typ: tar.TypeReg, mode: 0o644} }
func td(name string) tent       { return tent{name: name, typ: tar.TypeDir, mode: 0o750} }
func tl(name, target string) tent {
	return tent{name: name, link: target, typ: tar.TypeSymlink, mode: 0o644}
}
func th(name, target string) tent {
	return tent{name: name, link: target, typ: tar.TypeLink, mode: 0o644}
}

func tarLayer(t *testing.T, ents ...tent) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// describe renders a flattened tree as path → "d" (a directory an entry
// described, with its mode), "d-implied", "l:target" or "f:content", with
// "=group" appended to hardlinked paths (the group's sorted paths).
func describe(tree map[string]*file, bodies map[string]string) map[string]string {
	groups := map[string][]string{}
	for p, f := range tree {
		if f.link != "" {
			groups[f.link] = append(groups[f.link], p)
		}
	}
	out := map[string]string{}
	for p, f := range tree {
		if p == "/" {
			continue
		}
		var s string
		switch f.typ {
		case "directory":
			s = "d"
			if f.synthetic {
				s = "d-implied"
			} else if f.mode != 0o750 {
				s = "d-mode?"
			}
		case "symlink":
			s = "l:" + f.target
			if f.mode != 0o777 {
				s += " mode?"
			}
		case "regular":
			s = "f:" + bodies[f.digest]
		default:
			s = f.typ
		}
		if g := groups[f.link]; f.link != "" {
			slices.Sort(g)
			s += "=" + strings.Join(g, ",")
		}
		out[p] = s
	}
	return out
}

// TestFlattenApplierRules pins the reference side's rules on stacks whose
// results follow from containerd's archive package (and image-spec
// layer.md for whiteouts), including the ones the converter refuses.
func TestFlattenApplierRules(t *testing.T) {
	etc := []tent{td("etc/"), tf("etc/passwd", "root"), tf("etc/keep", "keep")}
	cases := []struct {
		name   string
		layers [][]tent
		want   map[string]string // "" for the error case
		err    string
	}{
		{name: "symlinked parent in a lower layer",
			layers: [][]tent{append(etc, tl("a", "/etc")), {tf("a/passwd", "new")}},
			want:   map[string]string{"/etc": "d", "/etc/passwd": "f:new", "/etc/keep": "f:keep", "/a": "l:/etc"}},
		{name: "symlinked parent in the same layer, relative, chained",
			layers: [][]tent{{td("x/"), tl("x/l1", "l2"), tl("x/l2", "../y/z"), tf("x/l1/f", "f")}},
			want: map[string]string{"/x": "d", "/x/l1": "l:l2", "/x/l2": "l:../y/z", "/y": "d-implied",
				"/y/z": "d-implied", "/y/z/f": "f:f"}},
		{name: "links leading above the root stop at the root",
			layers: [][]tent{{tl("up", "../../.."), tl("abs", "/../../srv")}, {tf("up/f", "f"), tf("abs/g", "g")}},
			want:   map[string]string{"/up": "l:../../..", "/abs": "l:/../../srv", "/f": "f:f", "/srv": "d-implied", "/srv/g": "f:g"}},
		{name: "dot-dot taken where the link leads, not where it is named",
			layers: [][]tent{{td("q/"), td("q/r/"), tl("p", "q/r")}, {tl("p/a", "../etc"), tf("p/a/passwd", "x")}},
			want: map[string]string{"/q": "d", "/q/r": "d", "/p": "l:q/r", "/q/r/a": "l:../etc",
				"/q/etc": "d-implied", "/q/etc/passwd": "f:x"}},
		{name: "symlink loop",
			layers: [][]tent{{tl("a", "b"), tl("b", "a"), tf("a/x", "x")}},
			err:    "more than 255 symlinks"},
		{name: "file used as a parent",
			layers: [][]tent{{tf("f", "f")}, {tf("f/x", "x")}},
			err:    "parent /f is a regular, not a directory"},
		{name: "whiteout and opaque through a symlinked parent",
			layers: [][]tent{append(etc, tl("a", "/etc"), td("o/"), tf("o/old", "old"), tl("b", "o")),
				{tf("a/.wh.passwd", ""), tf("b/.wh..wh..opq", ""), tf("b/new", "new")}},
			want: map[string]string{"/etc": "d", "/etc/keep": "f:keep", "/a": "l:/etc", "/o": "d", "/o/new": "f:new", "/b": "l:o"}},
		{name: "whiteouts hide lower layers only, wherever they are in the tar",
			layers: [][]tent{{td("d/"), td("d/e/"), tf("d/e/old", "old"), tf("x", "lower"), tl("s", "d")},
				{tf("x", "upper"), tf(".wh.x", ""), tf("s/e/new", "new"), tf("d/.wh..wh..opq", "")}},
			want: map[string]string{"/d": "d", "/d/e": "d-implied", "/d/e/new": "f:new", "/x": "f:upper", "/s": "l:d"}},
		{name: "whiteout of a link after entries written through it",
			layers: [][]tent{append(etc, tl("a", "/etc")), {tf("a/x", "x"), tf(".wh.a", "")}},
			want:   map[string]string{"/etc": "d", "/etc/passwd": "f:root", "/etc/keep": "f:keep", "/etc/x": "f:x"}},
		{name: "whiteout of a link before entries below its name",
			layers: [][]tent{append(etc, tl("a", "/etc")), {tf(".wh.a", ""), tf("a/x", "x")}},
			want: map[string]string{"/etc": "d", "/etc/passwd": "f:root", "/etc/keep": "f:keep",
				"/a": "d-implied", "/a/x": "f:x"}},
		{name: "invalid whiteout name",
			layers: [][]tent{{tf("d/.wh..", "")}},
			err:    `invalid whiteout name ".wh.."`},
		{name: "hardlinks through links, and a group broken by a later entry",
			layers: [][]tent{append(etc, tl("a", "/etc"), tf("g1", "g"), th("g2", "g1")),
				{tf("a/shadow", "s"), th("top", "etc/shadow"), th("a/gshadow", "a/shadow"), tf("g1", "new")}},
			want: map[string]string{"/etc": "d", "/etc/passwd": "f:root", "/etc/keep": "f:keep", "/a": "l:/etc",
				"/etc/shadow": "f:s=/etc/gshadow,/etc/shadow,/top", "/etc/gshadow": "f:s=/etc/gshadow,/etc/shadow,/top",
				"/top": "f:s=/etc/gshadow,/etc/shadow,/top", "/g1": "f:new", "/g2": "f:g"}},
		{name: "hardlink to a directory",
			layers: [][]tent{{td("d/"), th("h", "d")}},
			err:    "hardlink target d (/d) is a directory"},
		{name: "hardlink to a missing file",
			layers: [][]tent{{th("h", "nothing")}},
			err:    "hardlink target nothing (/nothing) does not exist"},
		{name: "type changes, duplicates, a directory over a lower symlink",
			layers: [][]tent{append(etc, tl("a", "/etc"), td("d2f/"), tf("d2f/c", "c"), tf("f2d", "f"), tf("dup", "1"), tf("dup", "2")),
				{td("a/"), tf("a/passwd", "own"), tf("d2f", "file"), td("f2d/"), tf("f2d/c", "c")}},
			want: map[string]string{"/etc": "d", "/etc/passwd": "f:root", "/etc/keep": "f:keep", "/a": "d", "/a/passwd": "f:own",
				"/d2f": "f:file", "/f2d": "d", "/f2d/c": "f:c", "/dup": "f:2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var layers []v1.Layer
			bodies := map[string]string{}
			for _, ents := range tc.layers {
				layers = append(layers, tarLayer(t, ents...))
				for _, e := range ents {
					sum := sha256.Sum256([]byte(e.body))
					bodies[hex.EncodeToString(sum[:])] = e.body
				}
			}
			tree, err := flatten(context.Background(), layers)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("flatten: %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(tree, bodies); !maps.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}
