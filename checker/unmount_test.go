package checker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// TestUnmountBusy: releasing a mount that a file is still open in detaches
// it lazily, so nothing stays mounted below the work directory.
func TestUnmountBusy(t *testing.T) {
	if err := checkMountable(); err != nil {
		t.Skip(err)
	}
	src, work := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rafsbuild.BuildDir(t.Context(), src, work, "img", rafsbuild.Options{}); err != nil {
		t.Fatal(err)
	}
	boot, err := os.Open(filepath.Join(work, "img.meta"))
	if err != nil {
		t.Fatal(err)
	}
	defer boot.Close()
	st, err := boot.Stat()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := rafs.Open(boot, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	mnt, release, err := mountImage(t.Context(), work, rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(filepath.Join(mnt, "f"))
	if err != nil {
		release()
		t.Fatal(err)
	}
	defer held.Close()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), " "+mnt+" ") {
		t.Errorf("%s is still mounted", mnt)
	}
}
