package randtree_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nydus-go/nydusify/internal/randtree"
	"github.com/nydus-go/nydusify/internal/treecmp"
)

// TestDeterministic: a seed makes the same tree every time, another seed a
// different one, and a few seeds together make every kind of entry.
func TestDeterministic(t *testing.T) {
	root := os.Geteuid() == 0
	dir := t.TempDir()
	var total randtree.Stats
	for seed := range uint64(5) {
		a, b := filepath.Join(dir, "a", string(rune('0'+seed))), filepath.Join(dir, "b", string(rune('0'+seed)))
		sa, err := randtree.Make(a, seed, randtree.Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		sb, err := randtree.Make(b, seed, randtree.Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		if sa != sb {
			t.Errorf("seed %d: %v, then %v", seed, sa, sb)
		}
		diffs, err := treecmp.Compare(a, b, treecmp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range diffs {
			t.Errorf("seed %d: %v", seed, d)
		}
		total.Dirs += sa.Dirs
		total.Files += sa.Files
		total.Symlinks += sa.Symlinks
		total.Hardlinks += sa.Hardlinks
		total.Fifos += sa.Fifos
		total.Devices += sa.Devices
		total.Xattrs += sa.Xattrs
	}
	if total.Dirs == 0 || total.Files == 0 || total.Symlinks == 0 || total.Hardlinks == 0 || total.Fifos == 0 ||
		total.Xattrs == 0 || root && total.Devices == 0 {
		t.Errorf("five seeds made %v", total)
	}
	diffs, err := treecmp.Compare(filepath.Join(dir, "a", "0"), filepath.Join(dir, "a", "1"), treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) == 0 {
		t.Error("seeds 0 and 1 made the same tree")
	}
}
