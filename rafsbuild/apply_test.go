package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestMergeRefusesTarOrder: a layer tree keeps no tar order, so where
// containerd's result depends on it, Merge must refuse, naming the path,
// rather than pick one order. (The stacks it can represent are judged
// against umoci in the converter's tests.)
func TestMergeRefusesTarOrder(t *testing.T) {
	cases := []struct {
		name         string
		lower, upper []tarEnt
		err          string
	}{
		{name: "a link replaced, and resolved through by another link",
			lower: []tarEnt{dir("etc/"), symlink("a", "/etc"), symlink("l", "/a")},
			upper: []tarEnt{dir("a/"), file("l/x", "x")},
			err:   "/a is a symlink below that this layer both removes and resolves paths through"},
		{name: "a link resolved through, then whited out",
			lower: []tarEnt{dir("etc/"), dir("z/"), symlink("z/l", "/etc"), symlink("a", "/z/l")},
			upper: []tarEnt{file("a/x", "x"), file("z/.wh.l", "")},
			err:   "/z/l is a symlink below that this layer both resolves paths through and removes"},
		{name: "a directory written through a link and replaced",
			lower: []tarEnt{dir("etc/"), symlink("a", "/etc")},
			upper: []tarEnt{file("a/x", "x"), file("etc", "now a file")},
			err:   "/etc is written by this layer through a symlink and replaced by it"},
		{name: "a link whited out with entries below its name",
			lower: []tarEnt{dir("etc/"), symlink("a", "/etc")},
			upper: []tarEnt{file(".wh.a", ""), file("a/x", "x")},
			err:   "/a has a whiteout and entries below it but no entry of its own"},
		{name: "dot-dot out of a directory the layer below makes a link",
			lower: []tarEnt{dir("q/"), dir("q/r/"), symlink("p", "q/r")},
			upper: []tarEnt{symlink("p/a", "../etc"), file("p/a/passwd", "x")},
			err:   `steps out of /p with ".."`},
		{name: "a file as a parent",
			lower: []tarEnt{file("f", "f")},
			upper: []tarEnt{file("f/x", "x")},
			err:   "/f holds entries of this layer but is a regular file"},
	}
	opts := rafsbuild.Options{Compressor: rafs.CompressNone}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			layers := buildLayers(t, t.TempDir(), opts, tarOf(t, tar.FormatPAX, tc.lower...), tarOf(t, tar.FormatPAX, tc.upper...))
			_, err := rafsbuild.Merge(layers, opts)
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, rafsbuild.ErrUnsupported) {
				t.Fatalf("merge: %v, want ErrUnsupported containing %q", err, tc.err)
			}
		})
	}
}

// TestLayerRefusesFileParent: within one layer, a file used as a parent
// fails as containerd's apply does (ENOTDIR), instead of becoming a
// directory.
func TestLayerRefusesFileParent(t *testing.T) {
	data := tarOf(t, tar.FormatPAX, file("f", "f"), file("f/x", "x"))
	f, err := os.CreateTemp(t.TempDir(), "layer-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), f, rafsbuild.Options{Compressor: rafs.CompressNone}, nil)
	if err == nil || !strings.Contains(err.Error(), `tar entry "f/x": unsupported input: not a directory: /f is used as a directory but is a regular file`) {
		t.Fatalf("BuildLayer: %v", err)
	}
}
