package rafs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Upstream's v5 fixtures (testdata/nydus/README.md): two bootstraps of one
// tree and their shared, uncompressed data blob.
const (
	v5Dir     = fixtureDir + "/repeatable"
	v5Sha256  = v5Dir + "/sha256-nocompress-repeatable"
	v5Blake3  = v5Dir + "/blake3-lz4_block-non_repeatable"
	v5Result  = v5Dir + "/sha256-nocompress-repeatable.result"
	v5BlobID  = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00"
	v5Records = 54
)

var v5Fixtures = []struct {
	name, path string
	digester   Digester
}{{"sha256", v5Sha256, DigestSha256}, {"blake3", v5Blake3, DigestBlake3}}

var v5BlobOnce = sync.OnceValues(func() ([]byte, error) {
	z, err := os.ReadFile(v5Dir + "/" + v5BlobID + ".zst")
	if err != nil {
		return nil, err
	}
	d, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(z, nil)
})

// v5Blob returns the fixture blob, whose sha256 must be its name.
func v5Blob(t testing.TB) []byte {
	t.Helper()
	b, err := v5BlobOnce()
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != v5BlobID {
		t.Fatalf("fixture blob sha256 %x, want its name", sum)
	}
	return b
}

func openV5Fixture(t testing.TB, p string) *Image {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	blob := v5Blob(t)
	img, err := OpenImage(bytes.NewReader(data), int64(len(data)), BlobOpenerFunc(func(i int, e BlobEntry) (io.ReaderAt, int64, error) {
		if e.BlobID != v5BlobID {
			return nil, 0, fmt.Errorf("unexpected blob %s", e.BlobID)
		}
		return bytes.NewReader(blob), int64(len(blob)), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// goldenEntry is one node of upstream's `tree -J` listing.
type goldenEntry struct {
	Type     string        `json:"type"`
	Name     string        `json:"name"`
	Target   string        `json:"target"`
	Contents []goldenEntry `json:"contents"`
}

// readGolden parses the .result file: a `tree -J` listing followed by
// md5sum lines of every regular file.
func readGolden(t *testing.T) ([]string, map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(v5Result)
	if err != nil {
		t.Fatal(err)
	}
	end := bytes.Index(raw, []byte("\n]\n"))
	if end < 0 {
		t.Fatal("no end of the JSON listing")
	}
	var top []goldenEntry
	if err := json.Unmarshal(raw[:end+2], &top); err != nil {
		t.Fatal(err)
	}
	var list []string
	var walk func(dir string, es []goldenEntry)
	walk = func(dir string, es []goldenEntry) {
		for _, e := range es {
			p := path.Join(dir, e.Name)
			switch e.Type {
			case "directory":
				list = append(list, "dir "+p)
				walk(p, e.Contents)
			case "file":
				list = append(list, "file "+p)
			case "link":
				list = append(list, "link "+p+" -> "+e.Target)
			}
		}
	}
	walk("/", top[0].Contents)
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw[end+3:]))
	for sc.Scan() {
		sum, p, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("md5 line %q", sc.Text())
		}
		sums[p] = sum
	}
	return list, sums
}

// TestV5FixtureTree reads both upstream v5 bootstraps and compares the tree
// with upstream's golden listing, and every file's content, read from the
// fixture blob through the chunk records, with the golden md5 sums.
func TestV5FixtureTree(t *testing.T) {
	for _, fx := range v5Fixtures {
		t.Run(fx.name, func(t *testing.T) {
			golden, sums := readGolden(t)
			if len(sums) != 23 {
				t.Fatalf("%d golden md5 sums", len(sums))
			}
			img := openV5Fixture(t, fx.path)
			rd := img.Bootstrap()
			if rd.Version() != 5 || rd.Blobs[0].Digester != fx.digester || rd.Blobs[0].Compressor != CompressNone ||
				rd.ChunkSize != 1<<20 || rd.Super.Inos != 51 || len(rd.Blobs) != 1 || rd.Blobs[0].ChunkCount != 23 {
				t.Fatalf("v%d, blobs %+v, chunk size %#x, %d inodes", rd.Version(), rd.Blobs, rd.ChunkSize, rd.Super.Inos)
			}
			var got []string
			nids := map[string]uint64{}
			err := rd.Walk(func(p string, n *Node) error {
				switch n.Type() {
				case ModeDir:
					if p != "/" {
						got = append(got, "dir "+p)
					}
				case ModeReg:
					got = append(got, "file "+p)
					nids[p] = n.Nid
					h := md5.New()
					if err := img.CopyFile(h, n); err != nil {
						return fmt.Errorf("%s: %w", p, err)
					}
					if sum := hex.EncodeToString(h.Sum(nil)); sum != sums[p] {
						t.Errorf("%s: md5 %s, golden %s", p, sum, sums[p])
					}
					delete(sums, p)
				case ModeLnk:
					target, err := rd.Readlink(n)
					if err != nil {
						return err
					}
					got = append(got, "link "+p+" -> "+target)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// The golden listing is depth-first; ours breadth-first.
			if strings.Join(sortedCopy(got), "\n") != strings.Join(sortedCopy(golden), "\n") {
				t.Errorf("tree differs:\n got %q\nwant %q", sortedCopy(got), sortedCopy(golden))
			}
			if len(sums) != 0 {
				t.Errorf("files never read: %v", sums)
			}
			// The three names of one file share its inode.
			if a, b, c := nids["/hardlink-test/foo"], nids["/hardlink-test/test.sh"], nids["/normal-file-test/test.sh"]; a != b || b != c {
				t.Errorf("hardlinks have nids %d %d %d", a, b, c)
			}
			if _, err := img.Verify(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	return slices.Sorted(slices.Values(s))
}
