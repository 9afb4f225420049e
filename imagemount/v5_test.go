package imagemount_test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/internal/testenv"
)

const (
	v5Fixtures = "../testdata/nydus/repeatable/"
	v5BlobID   = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00"
)

// v5Golden returns upstream's md5 sums of the fixture tree's files (the
// lines after the JSON listing in the .result file), by absolute path.
func v5Golden(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(v5Fixtures + "sha256-nocompress-repeatable.result")
	if err != nil {
		t.Fatal(err)
	}
	_, tail, ok := bytes.Cut(raw, []byte("\n]\n"))
	if !ok {
		t.Fatal("no end of the JSON listing")
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(tail))
	for sc.Scan() {
		sum, p, _ := strings.Cut(sc.Text(), "  ")
		sums[p] = sum
	}
	return sums
}

// TestMountV5Fixture mounts both upstream v5 bootstraps over FUSE with their
// blob in a localfs backend: every file reads with upstream's md5 sum, the
// symlinks read their targets and the three names of one file share an
// inode.
func TestMountV5Fixture(t *testing.T) {
	testenv.RequireFUSE(t)
	z, err := os.ReadFile(v5Fixtures + v5BlobID + ".zst")
	if err != nil {
		t.Fatal(err)
	}
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := d.DecodeAll(z, nil)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	blobs := t.TempDir()
	if err := os.WriteFile(filepath.Join(blobs, v5BlobID), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, boot := range []string{"sha256-nocompress-repeatable", "blake3-lz4_block-non_repeatable"} {
		t.Run(boot, func(t *testing.T) {
			cfg := imagemount.DefaultConfig()
			cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: blobs}
			cfg.CacheDir = t.TempDir()
			m := start(t, imagemount.Options{Bootstrap: v5Fixtures + boot, Config: cfg})
			dir := m.Info().MountPath
			sums := v5Golden(t)
			for p, want := range sums {
				f, err := os.Open(filepath.Join(dir, p))
				if err != nil {
					t.Error(err)
					continue
				}
				h := md5.New()
				_, err = io.Copy(h, f)
				f.Close()
				if got := hex.EncodeToString(h.Sum(nil)); err != nil || got != want {
					t.Errorf("%s: md5 %s (%v), upstream says %s", p, got, err, want)
				}
			}
			if target, err := os.Readlink(filepath.Join(dir, "symlink-test/test.sh")); err != nil || target != "../normal-file-test/test.sh" {
				t.Errorf("symlink: %q, %v", target, err)
			}
			var inos []uint64
			for _, p := range []string{"hardlink-test/foo", "hardlink-test/test.sh", "normal-file-test/test.sh"} {
				var st syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(dir, p), &st); err != nil {
					t.Fatal(err)
				}
				if st.Nlink != 3 {
					t.Errorf("%s: nlink %d", p, st.Nlink)
				}
				inos = append(inos, st.Ino)
			}
			if inos[0] != inos[1] || inos[1] != inos[2] {
				t.Errorf("hardlinks have inodes %v", inos)
			}
		})
	}
}
