package imagemount_test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	logtest "github.com/sirupsen/logrus/hooks/test"

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
	blobs := v5BlobDir(t)
	for _, boot := range []string{"sha256-nocompress-repeatable", "blake3-lz4_block-non_repeatable"} {
		t.Run(boot, func(t *testing.T) {
			cfg := imagemount.DefaultConfig()
			cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: blobs}
			cfg.CacheDir = t.TempDir()
			m := start(t, imagemount.Options{Bootstrap: v5Fixtures + boot, Config: cfg})
			dir := m.Info().MountPath
			for p, want := range v5Golden(t) {
				if got, err := md5File(filepath.Join(dir, p)); err != nil || got != want {
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

func md5File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestMountV5VerifyMetadata changes one byte of the target of
// /symlink-test/foo1 in the sha256 fixture. Without metadata verification
// the mount serves the changed target; with --verify-metadata (nydusd's
// digest_validate) looking the symlink up answers EIO and the log names its
// path, while every other file still reads with upstream's md5 sum.
func TestMountV5VerifyMetadata(t *testing.T) {
	testenv.RequireFUSE(t)
	blobs := v5BlobDir(t)
	boot, err := os.ReadFile(v5Fixtures + "sha256-nocompress-repeatable")
	if err != nil {
		t.Fatal(err)
	}
	// foo1 is inode 50 (docs/rafs-format.md §4): the inode table at 8192
	// holds record offsets / 8; the target follows the 128-byte record
	// and the name "foo1" padded to 8.
	off := int(binary.LittleEndian.Uint32(boot[8192+49*4:]))*8 + 128 + 8
	if string(boot[off:off+12]) != "../../fc/foo" {
		t.Fatalf("target at %d reads %q", off, boot[off:off+12])
	}
	boot[off+6] = 'X' // ../../Xc/foo
	tampered := filepath.Join(t.TempDir(), "tampered")
	if err := os.WriteFile(tampered, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			// The hook keeps entries under a lock: FUSE request goroutines log.
			logger, hook := logtest.NewNullLogger()
			logText := func() string {
				var b strings.Builder
				for _, e := range hook.AllEntries() {
					line, _ := e.String()
					b.WriteString(line)
				}
				return b.String()
			}
			cfg := imagemount.DefaultConfig()
			cfg.Backend = imagemount.BackendConfig{Type: "localfs", Dir: blobs}
			cfg.CacheDir = t.TempDir()
			cfg.VerifyMetadata = verify
			dir := start(t, imagemount.Options{Bootstrap: tampered, Config: cfg, Logger: logger}).Info().MountPath
			target, err := os.Readlink(filepath.Join(dir, "symlink-test/foo1"))
			switch {
			case !verify && (err != nil || target != "../../Xc/foo"):
				t.Errorf("without verification: %q, %v; want the changed target", target, err)
			case verify && !errors.Is(err, syscall.EIO):
				t.Errorf("with verification: %q, %v; want EIO", target, err)
			case verify && !strings.Contains(logText(), "/symlink-test/foo1"):
				t.Errorf("the log does not name the path:\n%s", logText())
			}
			for p, want := range v5Golden(t) {
				if got, err := md5File(filepath.Join(dir, p)); err != nil || got != want {
					t.Errorf("%s: md5 %s (%v), upstream says %s", p, got, err, want)
				}
			}
			if target, err := os.Readlink(filepath.Join(dir, "symlink-test/foo")); err != nil || target != "../normal-file-test/" {
				t.Errorf("symlink-test/foo: %q, %v", target, err)
			}
		})
	}
}

// v5BlobDir returns a directory holding the fixture blob, decompressed.
func v5BlobDir(t *testing.T) string {
	t.Helper()
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
	return blobs
}
