package rafsfs_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// rawNames lists a directory with getdents(2), which, unlike os.ReadDir,
// keeps the "." and ".." entries a program such as ls -a sees.
func rawNames(t *testing.T, dir string) []string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16,
		// d_type u8, then the NUL-terminated name. (unix.ParseDirent would
		// drop "." and "..", the entries this test is about.)
		for b := buf[:n]; len(b) > 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			name := b[19:reclen]
			names = append(names, string(name[:bytes.IndexByte(name, 0)]))
			b = b[reclen:]
		}
	}
	slices.Sort(names)
	return names
}

// TestDotEntries lists every directory of the mount as ls -a would and
// expects the names the source directory's own filesystem lists, "." and
// ".." included.
func TestDotEntries(t *testing.T) {
	testenv.RequireFUSE(t)
	img := buildImage(t, rafsbuild.Options{Compressor: rafs.CompressZstd, Digester: rafs.DigestBlake3})
	mnt, _ := mount(t, img, backend.NewLocalFS(img.out), t.TempDir(), nil)
	dirs := 0
	err := filepath.WalkDir(img.src, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(img.src, p)
		want, got := rawNames(t, p), rawNames(t, filepath.Join(mnt, rel))
		if !slices.Equal(want, got) {
			t.Errorf("%s: mount lists %q, source lists %q", rel, got, want)
		}
		dirs++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dirs < 5 {
		t.Fatalf("only %d directories compared", dirs)
	}
}
