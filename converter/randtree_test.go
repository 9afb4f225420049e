package converter_test

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/extract"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/randtree"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/internal/treetar"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

var (
	randSeeds = flag.Int("randtree.seeds", 20, "how many random trees TestRandomTrees checks")
	randFirst = flag.Uint64("randtree.first", 1, "the first seed TestRandomTrees checks")
)

// TestRandomTrees is a property test over random trees (internal/randtree:
// every file type, long and UTF-8 names, sizes at chunk and block edges,
// holes, repeated contents, hardlinks, xattrs; devices, owners and trusted
// xattrs as root). For each seed, with a chunk size and compressor the seed
// picks:
//   - build: the kernel's EROFS mount of the directory build equals the tree;
//   - convert: the tree as a one-layer OCI image, converted, mounted by the
//     kernel, equals umoci's unpack of that image.
//
// CI checks 20 seeds (-short: 4); -randtree.seeds=N and -randtree.first=S
// run others, and a failure names its seed.
func TestRandomTrees(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireEROFS(t)
	testenv.RequireTool(t, "umoci")
	n := *randSeeds
	if testing.Short() && n > 4 {
		n = 4
	}
	chunkSizes := []uint32{0x1000, 0x2000, 0x10000, 0x100000}
	compressors := []rafs.Compressor{rafs.CompressNone, rafs.CompressLZ4Block, rafs.CompressZstd}
	for seed := *randFirst; seed < *randFirst+uint64(n); seed++ {
		cs := chunkSizes[seed%uint64(len(chunkSizes))]
		c := compressors[seed/uint64(len(chunkSizes))%uint64(len(compressors))]
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src")
			st, err := randtree.Make(src, seed, randtree.Options{ChunkSize: int64(cs), Root: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("seed %d, chunk size %#x, %v: %v", seed, cs, c, st)
			opts := rafsbuild.Options{Compressor: c, ChunkSize: cs}

			t.Run("build", func(t *testing.T) {
				out := filepath.Join(dir, "build")
				res, err := rafsbuild.BuildDir(context.Background(), src, out, "img", opts)
				if err != nil {
					t.Fatal(err)
				}
				boot := filepath.Join(out, res.Bootstrap)
				var views []string
				if len(res.Blobs) > 0 {
					img := openBuild(t, out, boot)
					if views, err = img.BlobViews(context.Background(), filepath.Join(dir, "views")); err != nil {
						t.Fatal(err)
					}
				}
				mnt := mounttest.EROFS(t, boot, views)
				mounttest.RequireSame(t, src, mnt, treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
			})

			t.Run("convert", func(t *testing.T) {
				img, err := treetar.Image(src)
				if err != nil {
					t.Fatal(err)
				}
				srcLayout, dstLayout := filepath.Join(dir, "oci-src"), filepath.Join(dir, "oci-dst")
				if err := treetar.WriteLayout(src, srcLayout, "t"); err != nil {
					t.Fatal(err)
				}
				if _, err := converter.Convert(context.Background(), converter.Options{
					Source: "oci:" + srcLayout + ":t", Target: "oci:" + dstLayout + ":t", Build: opts,
				}); err != nil {
					t.Fatal(err)
				}
				idx, err := layout.ImageIndexFromPath(dstLayout)
				if err != nil {
					t.Fatal(err)
				}
				im, err := idx.IndexManifest()
				if err != nil {
					t.Fatal(err)
				}
				nydus, err := idx.Image(im.Manifests[0].Digest)
				if err != nil {
					t.Fatal(err)
				}
				// An xattr with an empty value is a PAX record with an empty
				// value. umoci 0.4 reads archive/tar's deprecated Xattrs map,
				// which leaves such records out; upstream nydus-image and
				// containerd's applier read every SCHILY.xattr record, and so
				// do we (the build subtest checks them against the tree).
				mounttest.RequireSame(t, fx.UmociUnpack(t, img), mountNydus(t, nydus),
					treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true},
					func(d treecmp.Diff) bool {
						return strings.HasPrefix(d.Field, treecmp.FieldXattr+":") && d.Want == "absent" && d.Got == `""`
					})
			})
		})
	}
}

func openBuild(t testing.TB, out, boot string) *extract.Image {
	t.Helper()
	img, err := extract.Open(boot, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}
