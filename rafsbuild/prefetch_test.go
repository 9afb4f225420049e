package rafsbuild_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestPrefetchTable builds with prefetch patterns: the table lists, in
// pattern order, the nids of the paths named (not missing ones, covered
// ones or empty files), the covered files' data comes first in the blob,
// and fsck.erofs still accepts the image.
func TestPrefetchTable(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"a/x/1": "ax1", "a/y": "ay", "b": "b data", "c/z": "cz", "c/empty": "", "d": "d"}
	for name, body := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logger, hook := test.NewNullLogger()
	out, _ := build(t, src, rafsbuild.Options{
		PrefetchPatterns: []string{"/b", "/c/empty", "/a/x/", "/missing", "/a/x/1", "/a"},
		Logger:           logger,
	})
	var warnings []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "/a/x/1 is covered") {
		t.Errorf("warnings %q, want one about /a/x/1", warnings)
	}
	img := openImage(t, out)
	rd := img.Boot
	table, err := rd.PrefetchTable()
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for _, p := range []string{"/b", "/a/x", "/a"} {
		n, err := rd.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, uint32(n.Nid))
	}
	if !slices.Equal(table, want) {
		t.Errorf("prefetch table %v, want %v (/b, /a/x, /a)", table, want)
	}
	// Data order: /b, then /a/x/1, then /a/y, then the rest in visiting order.
	var offsets []uint64
	for _, p := range []string{"/b", "/a/x/1", "/a/y", "/d", "/c/z"} {
		n, _ := rd.Lookup(p)
		addrs, err := rd.Chunks(n)
		if err != nil || len(addrs) != 1 {
			t.Fatalf("%s: %v, %v", p, addrs, err)
		}
		offsets = append(offsets, uint64(addrs[0].BlkAddr))
	}
	if !slices.IsSorted(offsets) {
		t.Errorf("data block addresses %v of /b, /a/x/1, /a/y, /d, /c/z are not in prefetch order", offsets)
	}
	if os.Geteuid() == 0 {
		views, err := img.BlobViews(t.Context(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		testenv.FsckEROFS(t, filepath.Join(out, "image.meta"), views)
	}

	if _, err := rafsbuild.BuildDir(t.Context(), src, t.TempDir(), "x", rafsbuild.Options{PrefetchPatterns: []string{"relative"}}); err == nil {
		t.Error("a relative prefetch pattern was accepted")
	}
	// The default is no table.
	plain, _ := build(t, src, rafsbuild.Options{})
	if table, _ := openImage(t, plain).Boot.PrefetchTable(); len(table) != 0 {
		t.Errorf("a build without patterns has prefetch table %v", table)
	}
}
