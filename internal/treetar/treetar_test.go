package treetar

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nydus-go/nydusify/internal/fstree"
)

// TestWrite: the fstree tree round-trips its names, types and hardlinks, and
// two writes give the same bytes.
func TestWrite(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	if err := fstree.Make(root, fstree.Options{Root: os.Geteuid() == 0}); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := Write(&a, root); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, root); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes of the same tree differ")
	}
	tr := tar.NewReader(&a)
	var links, xattrs, entries int
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries++
		if h.Typeflag == tar.TypeLink {
			links++
		}
		for k := range h.PAXRecords {
			if len(k) > 13 && k[:13] == "SCHILY.xattr." {
				xattrs++
			}
		}
	}
	if entries < fstree.BigDirEntries || links < 2 || xattrs == 0 {
		t.Errorf("%d entries, %d hardlinks, %d xattrs", entries, links, xattrs)
	}
}
