package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// FuzzBuildLayer feeds arbitrary bytes as a layer tar. BuildLayer must
// return an error or a layer, never panic; and a layer it accepts, read back
// through its own inline bootstrap and blob, must hold what archive/tar reads
// from the same bytes applied in order (later entries replacing earlier ones,
// a directory over a directory keeping its children, missing parents made as
// 0755 root directories, hardlinks sharing their target's metadata and
// content): the same paths with the same types, permission bits, owners,
// sizes, content digests, mtimes, symlink targets, device numbers and
// xattrs. An xattr RAFS cannot store may be left out only with a warning.
// Tars with entries below a symlink are not compared (see throughSymlink).
func FuzzBuildLayer(f *testing.F) {
	f.Add(tarOf(f, tar.FormatPAX, dir("./"), file("./a", "x"), link("./b", "./a"), symlink("./c", "a")))
	f.Add(tarOf(f, tar.FormatGNU, file("d/.wh..wh..opq", ""), file("d/e", "y")))
	f.Add(tarOf(f, tar.FormatPAX, file("f", "1"), dir("f/"), file("f/g", strings.Repeat("z", 5000)), file("f", "2"), link("h", "f")))
	f.Add(tarOf(f, tar.FormatPAX, dir("d/"), link("l", "d"), file(".wh.k/z", "")))
	owned := file("o", "owned")
	owned.uid, owned.gid, owned.mode = 1000, 2000, 0o4750
	f.Add(tarOf(f, tar.FormatPAX, owned, tarEnt{name: "dev/c", typ: tar.TypeChar, mode: 0o600, major: 1, minor: 3},
		tarEnt{name: "p", typ: tar.TypeFifo, mode: 0o644}, symlink("s", "../o"), link("o2", "o")))
	xattrs := file("x", "with xattrs")
	f.Add(tarOfXattrs(f, xattrs, map[string]string{"SCHILY.xattr.user.a": "1", "SCHILY.xattr.bogus.b": "2"}))
	if data, err := os.ReadFile(filepath.Join("..", "testdata", "nydus", "tar", "all-entry-type.tar")); err == nil {
		f.Add(data)
	}
	f.Fuzz(checkLayer)
}

// FuzzBuildLayerEntries is FuzzBuildLayer on well-formed tars: the fuzz
// bytes pick entries (4 bytes each: type, name, two parameters) from a small
// vocabulary of names that collide, nest, climb, use whiteout names and
// cross chunk boundaries, written by archive/tar, so that mutation explores
// the order and meaning of entries rather than header checksums.
func FuzzBuildLayerEntries(f *testing.F) {
	f.Add([]byte{0, 0, 10, 1, 1, 3, 0, 0, 4, 1, 0, 0, 2, 2, 9, 0})
	f.Add([]byte{1, 2, 0, 0, 0, 3, 200, 7, 0, 1, 50, 0, 3, 4, 1, 0, 5, 5, 3, 1})
	f.Add([]byte{0, 8, 0, 0, 0, 1, 3, 0, 1, 9, 0, 0, 0, 10, 1, 0, 4, 11, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) { checkLayer(t, layerFromOps(t, ops)) })
}

var fuzzNames = []string{
	"a", "b", "a/b", "a/b/c", "./a", "/a/", "a/../b", "d/e/f", ".wh.a", "a/.wh.b",
	".wh..wh..opq", "a/.wh..wh..opq", "..", "c/../../x", ".wh.a/z", strings.Repeat("n", 150) + "/long", "", ".",
}

func layerFromOps(t *testing.T, ops []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for ; len(ops) >= 4; ops = ops[4:] {
		op, name, p, q := ops[0], fuzzNames[int(ops[1])%len(fuzzNames)], int(ops[2]), int(ops[3])
		h := &tar.Header{Name: name, Mode: int64(q&7)<<9 | int64(p)&0o777, Uid: p * 1000, Gid: q,
			ModTime: time.Unix(1700000000+int64(p), int64(q)*1000), Format: tar.FormatPAX}
		var body []byte
		switch op % 8 {
		case 0, 7:
			h.Typeflag = tar.TypeReg
			// Sizes cross the 4 KiB chunks; repeats dedup.
			body = bytes.Repeat([]byte{byte(q)}, p*37%9000)
			h.Size = int64(len(body))
		case 1:
			h.Typeflag = tar.TypeDir
		case 2:
			h.Typeflag, h.Linkname = tar.TypeSymlink, fuzzNames[p%len(fuzzNames)]
		case 3:
			h.Typeflag, h.Linkname = tar.TypeLink, fuzzNames[p%len(fuzzNames)]
		case 4:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(p)*17, int64(q)*4099
		case 5:
			h.Typeflag = tar.TypeFifo
		case 6:
			h.Typeflag = tar.TypeReg
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.k" + fmt.Sprint(q%3): fmt.Sprint(p),
				"SCHILY.xattr." + []string{"security.x", "trusted.y", "other.z", "user."}[q%4]: "v"}
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkLayer converts one layer tar and holds the result to what
// archive/tar reads (see FuzzBuildLayer).
func checkLayer(t *testing.T, data []byte) {
	want, warnable, verdict := readTarModel(data)
	if verdict == skip {
		return
	}
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "blob"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	logger, hook := test.NewNullLogger()
	opts := rafsbuild.Options{ChunkSize: 0x1000, Workers: 2, Logger: logger}
	l, err := rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), out, opts, nil)
	var warnings []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	if err != nil {
		return
	}
	if verdict != compare {
		t.Fatalf("accepted a layer that must be refused: %s", verdict)
	}
	if len(warnings) != warnable {
		t.Errorf("%d warnings %q, want one per xattr RAFS cannot store (%d)", len(warnings), warnings, warnable)
	}
	got, err := readLayerBack(out, l.Size)
	if err != nil {
		t.Fatalf("reading the accepted layer back: %v", err)
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[p]
		if !ok {
			t.Errorf("%q: missing from the layer", p)
			continue
		}
		if d := want[p].diff(g, p == ""); d != "" {
			t.Errorf("%q: %s", p, d)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%q: in the layer, not in the tar", p)
		}
	}
}

func tarOfXattrs(t testing.TB, e tarEnt, pax map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body)), PAXRecords: pax, Format: tar.FormatPAX})
	tw.Write([]byte(e.body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fsEntry is one path as the model expects it, or as read back.
type fsEntry struct {
	typ          uint32 // rafs.ModeReg, ModeDir...
	perm         uint32
	uid, gid     uint64
	size         int64 // regular files
	sum          [32]byte
	target       string
	major, minor int64
	mtime        int64
	nsec         int64
	xattrs       map[string]string
}

func (w *fsEntry) diff(g *fsEntry, root bool) string {
	var d []string
	check := func(what string, want, got any) {
		if want != got {
			d = append(d, fmt.Sprintf("%s %v, want %v", what, got, want))
		}
	}
	check("type", w.typ, g.typ)
	check("mode", w.perm, g.perm)
	check("uid", w.uid, g.uid)
	check("gid", w.gid, g.gid)
	if w.typ == rafs.ModeReg {
		check("size", w.size, g.size)
		check("content", w.sum, g.sum)
	}
	if w.typ == rafs.ModeLnk {
		check("target", w.target, g.target)
	}
	if w.typ == rafs.ModeChr || w.typ == rafs.ModeBlk {
		check("device", fmt.Sprint(w.major, ":", w.minor), fmt.Sprint(g.major, ":", g.minor))
	}
	if !root { // the root's mtime is stored as 0, as upstream does
		check("mtime", fmt.Sprint(w.mtime, ".", w.nsec), fmt.Sprint(g.mtime, ".", g.nsec))
	}
	if !maps.Equal(w.xattrs, g.xattrs) && (len(w.xattrs) > 0 || len(g.xattrs) > 0) {
		d = append(d, fmt.Sprintf("xattrs %v, want %v", g.xattrs, w.xattrs))
	}
	return strings.Join(d, "; ")
}

const (
	compare = ""
	skip    = "skip"
)

// readTarModel applies the entries archive/tar reads from data, in order, to
// a map of paths, and reports how many xattrs RAFS cannot store it met. The
// verdict is compare, skip (archive/tar fails, or a file is too large to
// compare quickly) or why the layer must be refused: no applier can create
// what it asks for (a hardlink to a directory or to nothing), or the result
// would differ from it (a name above the root, a whiteout name used as a
// directory that the image's merge would read as a deletion).
// throughSymlink reports whether a parent directory of p is a symlink in m.
func throughSymlink(m map[string]*fsEntry, p string) bool {
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		if e := m[strings.Join(parts[:i], "/")]; e != nil && e.typ == rafs.ModeLnk {
			return true
		}
	}
	return false
}

func readTarModel(data []byte) (map[string]*fsEntry, int, string) {
	m := map[string]*fsEntry{"": {typ: rafs.ModeDir, perm: 0o755}}
	removeTree := func(p string) {
		for k := range m {
			if k == p || strings.HasPrefix(k, p+"/") {
				delete(m, k)
			}
		}
	}
	clean := func(name string) (string, bool) {
		if c := path.Clean(name); c == ".." || strings.HasPrefix(c, "../") {
			return "", false
		}
		return strings.Trim(path.Clean("/"+name), "/"), true
	}
	warnable := 0
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return m, warnable, compare
		}
		if err != nil || hdr.Size > 16<<20 {
			return nil, 0, skip
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p, ok := clean(hdr.Name)
		if !ok {
			return nil, 0, "name above the root: " + hdr.Name
		}
		if parts := strings.Split(p, "/"); slices.ContainsFunc(parts[:len(parts)-1], func(c string) bool { return strings.HasPrefix(c, ".wh.") }) {
			return nil, 0, "whiteout name as a directory: " + hdr.Name
		}
		e := &fsEntry{
			perm: uint32(hdr.Mode) & 0o7777, uid: uint64(hdr.Uid), gid: uint64(hdr.Gid),
			mtime: hdr.ModTime.Unix(), nsec: int64(hdr.ModTime.Nanosecond()),
			target: hdr.Linkname, major: hdr.Devmajor, minor: hdr.Devminor,
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if _, err := rafs.XattrAreaSize([]rafs.Xattr{{Name: name, Value: []byte(v)}}); err != nil {
					warnable++
					continue
				}
				if e.xattrs == nil {
					e.xattrs = map[string]string{}
				}
				e.xattrs[name] = v
			}
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse:
			e.typ = rafs.ModeReg
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				return nil, 0, skip
			}
			e.size = n
			copy(e.sum[:], h.Sum(nil))
		case tar.TypeDir:
			e.typ = rafs.ModeDir
		case tar.TypeSymlink:
			// symlink(2) makes every link 0777, whatever the header says.
			e.typ, e.perm = rafs.ModeLnk, 0o777
		case tar.TypeChar:
			e.typ = rafs.ModeChr
		case tar.TypeBlock:
			e.typ = rafs.ModeBlk
		case tar.TypeFifo:
			e.typ = rafs.ModeFifo
		}
		// An entry below a symlink lands where the link leads, as
		// containerd applies it; this model does not follow links (the
		// applier tests judge that against umoci), so such input is not
		// compared. Missing parents, or other non-directories in their
		// place, become 0755 root directories.
		if throughSymlink(m, p) || hdr.Typeflag == tar.TypeLink && throughSymlink(m, path.Clean("/" + hdr.Linkname)[1:]) {
			return nil, 0, skip
		}
		if p != "" {
			parts := strings.Split(p, "/")
			for i := 1; i < len(parts); i++ {
				a := strings.Join(parts[:i], "/")
				if old, ok := m[a]; !ok || old.typ != rafs.ModeDir {
					removeTree(a)
					m[a] = &fsEntry{typ: rafs.ModeDir, perm: 0o755}
				}
			}
		}
		if hdr.Typeflag == tar.TypeLink {
			target, ok := clean(hdr.Linkname)
			switch {
			case !ok:
				return nil, 0, "hardlink target above the root: " + hdr.Linkname
			case m[target] == nil || target == "":
				return nil, 0, "hardlink to nothing: " + hdr.Linkname
			case m[target].typ == rafs.ModeDir:
				return nil, 0, "hardlink to a directory: " + hdr.Linkname
			}
			cp := *m[target]
			e = &cp
		}
		if old, ok := m[p]; ok && old.typ == rafs.ModeDir && e.typ == rafs.ModeDir {
			m[p] = e // new metadata, children kept
			continue
		}
		removeTree(p)
		m[p] = e
	}
}

// readLayerBack reads a layer blob through its inline bootstrap.
func readLayerBack(f *os.File, size int64) (map[string]*fsEntry, error) {
	toc, _, err := rafs.ReadTOC(f, size, 0)
	if err != nil {
		return nil, err
	}
	var boot []byte
	for _, e := range toc {
		if e.Name == rafs.TOCImageBoot {
			if boot, err = rafs.ReadTOCData(f, e, 64<<20); err != nil {
				return nil, err
			}
		}
	}
	rd, err := rafs.Open(bytes.NewReader(boot), int64(len(boot)))
	if err != nil {
		return nil, err
	}
	img, err := rafs.NewImage(rd, rafs.BlobOpenerFunc(func(int, rafs.BlobEntry) (io.ReaderAt, int64, error) {
		return f, size, nil
	}))
	if err != nil {
		return nil, err
	}
	got := map[string]*fsEntry{}
	err = rd.Walk(func(p string, n *rafs.Node) error {
		ino := n.Inode
		e := &fsEntry{
			typ: n.Type(), perm: uint32(ino.Mode) & 0o7777, uid: uint64(ino.UID), gid: uint64(ino.GID),
			mtime: int64(ino.Mtime), nsec: int64(ino.MtimeNsec),
		}
		for _, x := range n.Xattrs {
			if e.xattrs == nil {
				e.xattrs = map[string]string{}
			}
			e.xattrs[x.Name] = string(x.Value)
		}
		switch e.typ {
		case rafs.ModeReg:
			h := sha256.New()
			if err := img.CopyFile(h, n); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			e.size = int64(ino.Size)
			copy(e.sum[:], h.Sum(nil))
		case rafs.ModeLnk:
			if e.target, err = rd.Readlink(n); err != nil {
				return err
			}
		case rafs.ModeChr, rafs.ModeBlk:
			major, minor := rafs.DecodeRdev(ino.U)
			e.major, e.minor = int64(major), int64(minor)
		}
		got[strings.Trim(p, "/")] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}
