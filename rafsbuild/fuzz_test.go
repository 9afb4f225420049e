package rafsbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nydus-go/nydusify/rafsbuild"
)

// FuzzBuildLayer feeds arbitrary bytes as a layer tar: BuildLayer must return
// an error or a layer, never panic.
func FuzzBuildLayer(f *testing.F) {
	f.Add(tarOf(f, tar.FormatPAX, dir("./"), file("./a", "x"), link("./b", "./a"), symlink("./c", "a")))
	f.Add(tarOf(f, tar.FormatGNU, file("d/.wh..wh..opq", ""), file("d/e", "y")))
	if data, err := os.ReadFile(filepath.Join("..", "testdata", "nydus", "tar", "all-entry-type.tar")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := os.CreateTemp(t.TempDir(), "blob")
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		rafsbuild.BuildLayer(context.Background(), bytes.NewReader(data), out, rafsbuild.Options{ChunkSize: 0x1000}, nil)
	})
}
