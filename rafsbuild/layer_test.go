package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

type tarEnt struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
}

func tarOf(t testing.TB, format tar.Format, ents ...tarEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Uid: e.uid, Gid: e.gid, Devmajor: e.major, Devminor: e.minor,
			ModTime: time.Unix(1700000000, 0), Format: format}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name, body string) tarEnt   { return tarEnt{name: name, body: body, typ: tar.TypeReg} }
func dir(name string) tarEnt          { return tarEnt{name: name, typ: tar.TypeDir, mode: 0o755} }
func link(name, target string) tarEnt { return tarEnt{name: name, link: target, typ: tar.TypeLink} }
func symlink(name, target string) tarEnt {
	return tarEnt{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}

// buildLayers converts each tar into a blob named by its digest in dir.
func buildLayers(t testing.TB, dir string, opts rafsbuild.Options, tars ...[]byte) []*rafsbuild.Layer {
	t.Helper()
	var layers []*rafsbuild.Layer
	dict := rafsbuild.NewChunkDict()
	for _, data := range tars {
		f, err := os.CreateTemp(dir, "layer-*")
		if err != nil {
			t.Fatal(err)
		}
		l, err := rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), f, opts, dict)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.Name(), filepath.Join(dir, l.Digest)); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	return layers
}

// listTree maps every path under root to its type letter and content.
func listTree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.IsDir():
			out[rel] = "d"
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "l:" + target
		default:
			b, _ := os.ReadFile(p)
			out[rel] = "f:" + string(b)
		}
		return nil
	})
	return out
}

func mapString(m map[string]string) string {
	var keys []string
	for k, v := range m {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return strings.Join(keys, "\n")
}

// TestMergeOverlay stacks three layers with whiteouts, an opaque directory,
// type changes in both directions and hardlinks, and checks the merged
// image (read back through our reader, and through the kernel when root).
func TestMergeOverlay(t *testing.T) {
	tmp := t.TempDir()
	opts := rafsbuild.Options{Compressor: rafs.CompressZstd}
	l1 := tarOf(t, tar.FormatPAX,
		dir("./"), dir("./a/"), dir("./a/b/"), file("./a/b/gone", "1"), file("./a/keep", "keep"),
		dir("./opq/"), file("./opq/old", "old"), file("./f2d", "file"), dir("./d2f/"), file("./d2f/child", "c"),
		file("./h1", "linked"), link("./h2", "./h1"), file("./x", "v1"), symlink("./s", "x"),
		file("./dup", "first"), file("./dup", "second"))
	l2 := tarOf(t, tar.FormatGNU,
		file("a/.wh.b", ""), file("opq/.wh..wh..opq", ""), file("opq/new", "new"),
		dir("f2d/"), file("f2d/inner", "inner"), file("d2f", "now a file"),
		file("x", "v2"), file("deep/implied/file", "implied parents"), file("deep/.wh.nothing", ""))
	l3 := tarOf(t, tar.FormatUSTAR, file("/.wh.s", ""), file("g1", "layer3"), link("g2", "g1"), file("copy", "keep"))
	layers := buildLayers(t, tmp, opts, l1, l2, l3)
	if layers[0].Stats.DedupChunks != 0 || layers[0].BlobMeta == nil {
		t.Errorf("layer 1 stats %+v", layers[0].Stats)
	}
	// Layer 3's "copy" repeats layer 1's a/keep: stored once, in layer 1's blob.
	if s := layers[2].Stats; s.DictChunks != 1 || s.BlobChunks != 1 {
		t.Errorf("layer 3 stats %+v, want 1 cross-layer dedup and 1 stored chunk", s)
	}
	m, err := rafsbuild.Merge(layers, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Blobs) != 3 {
		t.Fatalf("blob table %v", m.Blobs)
	}
	boot := filepath.Join(tmp, "image.boot")
	if err := os.WriteFile(boot, m.Bootstrap, 0o644); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"a": "d", "a/keep": "f:keep", "opq": "d", "opq/new": "f:new",
		"f2d": "d", "f2d/inner": "f:inner", "d2f": "f:now a file",
		"h1": "f:linked", "h2": "f:linked", "x": "f:v2", "dup": "f:second",
		"deep": "d", "deep/implied": "d", "deep/implied/file": "f:implied parents",
		"g1": "f:layer3", "g2": "f:layer3", "copy": "f:keep",
	}
	img, err := extract.Open(boot, tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	dst := filepath.Join(t.TempDir(), "x")
	if err := img.Tree(context.Background(), dst, extract.TreeOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, dst); mapString(got) != mapString(want) {
		t.Errorf("merged tree:\n%s\nwant:\n%s", mapString(got), mapString(want))
	}
	for _, pair := range [][2]string{{"h1", "h2"}, {"g1", "g2"}} {
		a, _ := os.Stat(filepath.Join(dst, pair[0]))
		b, _ := os.Stat(filepath.Join(dst, pair[1]))
		if !os.SameFile(a, b) {
			t.Errorf("%s and %s are not one inode", pair[0], pair[1])
		}
	}
	if os.Geteuid() == 0 {
		testenv.RequireEROFS(t)
		views, err := img.BlobViews(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		mnt := mounttest.EROFS(t, boot, views)
		if got := listTree(t, mnt); mapString(got) != mapString(want) {
			t.Errorf("kernel sees:\n%s\nwant:\n%s", mapString(got), mapString(want))
		}
	}
}

// TestLayerBlobLayout checks a layer blob's TOC (image.blob, blob.meta,
// blob.meta.header, blob.digest, image.boot) and its inline bootstrap.
func TestLayerBlobLayout(t *testing.T) {
	tmp := t.TempDir()
	l := buildLayers(t, tmp, rafsbuild.Options{Compressor: rafs.CompressZstd}, tarOf(t, tar.FormatPAX, file("a", "hello"), file("b", "")))[0]
	f, err := os.Open(filepath.Join(tmp, l.Digest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	toc, _, err := rafs.ReadTOC(f, l.Size, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var boot []byte
	for _, e := range toc {
		names = append(names, e.Name)
		if e.Name == rafs.TOCImageBoot {
			if boot, err = rafs.ReadTOCData(f, e, 1<<20); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(names, ",") != "image.blob,blob.meta,blob.meta.header,blob.digest,image.boot" {
		t.Errorf("TOC %v", names)
	}
	rd, err := rafs.Open(bytes.NewReader(boot), int64(len(boot)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rd.Blobs) != 1 || rd.Blobs[0].BlobID != strings.Repeat("x", 64) || rd.Blobs[0].Features != 0x70000023 {
		t.Errorf("inline bootstrap blob table %+v", rd.Blobs)
	}
	// A layer without file data still gets a blob: bootstrap and TOC only.
	empty := buildLayers(t, tmp, rafsbuild.Options{}, tarOf(t, tar.FormatPAX, dir("etc/")))[0]
	if empty.BlobMeta != nil || empty.Stats.BlobChunks != 0 {
		t.Errorf("empty layer %+v", empty.Stats)
	}
}

func TestLayerRejectsTraversal(t *testing.T) {
	for _, name := range []string{"../evil", "a/../../evil", "./../x"} {
		f, err := os.CreateTemp(t.TempDir(), "blob")
		if err != nil {
			t.Fatal(err)
		}
		_, err = rafsbuild.BuildLayer(context.Background(), bytes.NewReader(tarOf(t, tar.FormatPAX, file(name, "x"))), f, rafsbuild.Options{}, nil)
		f.Close()
		if !errors.Is(err, rafsbuild.ErrPathEscape) {
			t.Errorf("%q: err %v, want ErrPathEscape", name, err)
		}
	}
	f, _ := os.CreateTemp(t.TempDir(), "blob")
	defer f.Close()
	if _, err := rafsbuild.BuildLayer(context.Background(), bytes.NewReader(tarOf(t, tar.FormatPAX, link("a", "missing"))), f, rafsbuild.Options{}, nil); err == nil {
		t.Error("hardlink to a missing file accepted")
	}
}

// rawTarHeader hand-writes a ustar header: Go's tar writer will not emit
// GNU sparse records, so the sparse test builds its archive by hand.
func rawTarHeader(name string, typ byte, size int) []byte {
	h := make([]byte, 512)
	copy(h[0:], name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "14712342000\x00")
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	copy(h[148:], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

func pad512(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	for {
		s := fmt.Sprintf("%d %s=%s\n", n, k, v)
		if len(s) == n {
			return s
		}
		n = len(s)
	}
}

// TestLayerSparseEntry: a GNU sparse 1.0 (PAX) entry expands to its real
// size with holes as zeros.
func TestLayerSparseEntry(t *testing.T) {
	const realSize = 3<<20 + 6
	pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", "sparse") + paxRecord("GNU.sparse.realsize", fmt.Sprint(realSize))
	sparseMap := pad512([]byte(fmt.Sprintf("2\n0\n5\n%d\n6\n", realSize-6)))
	data := append(sparseMap, "hello"+"world!"...)
	var archive []byte
	archive = append(archive, rawTarHeader("PaxHeaders/sparse", 'x', len(pax))...)
	archive = append(archive, pad512([]byte(pax))...)
	archive = append(archive, rawTarHeader("GNUSparseFile.0/sparse", '0', len(data))...)
	archive = append(archive, pad512(data)...)
	archive = append(archive, make([]byte, 1024)...)

	tmp := t.TempDir()
	layers := buildLayers(t, tmp, rafsbuild.Options{Compressor: rafs.CompressZstd}, archive)
	m, err := rafsbuild.Merge(layers, rafsbuild.Options{Compressor: rafs.CompressZstd})
	if err != nil {
		t.Fatal(err)
	}
	boot := filepath.Join(tmp, "image.boot")
	if err := os.WriteFile(boot, m.Bootstrap, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := extract.Open(boot, tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	dst := filepath.Join(t.TempDir(), "x")
	if err := img.Tree(context.Background(), dst, extract.TreeOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, realSize)
	copy(want, "hello")
	copy(want[realSize-6:], "world!")
	if !bytes.Equal(got, want) {
		t.Errorf("sparse file: %d bytes, want %d with data at both ends", len(got), len(want))
	}
	if s := layers[0].Stats; s.DedupChunks < 1 {
		t.Errorf("the hole's zero chunks did not dedup: %+v", s)
	}
}
