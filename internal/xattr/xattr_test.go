package xattr

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("v", 3000)
	if err := unix.Lsetxattr(p, "user.big", []byte(big), 0); errors.Is(err, unix.ENOTSUP) {
		t.Skip("the temp filesystem has no user xattrs")
	} else if err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(p, "user.empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil || len(got) != 2 || got["user.big"] != big || got["user.empty"] != "" {
		t.Errorf("Read = %d xattrs %v, %v", len(got), got["user.empty"], err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(p, link)
	if got, err := Read(link); err != nil || len(got) != 0 {
		t.Errorf("Read of a symlink followed it: %v, %v", got, err)
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Error("Read of a missing path succeeded")
	}
}
