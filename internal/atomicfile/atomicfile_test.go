package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nydus-go/nydusify/internal/atomicfile"
)

// names lists dir's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func wantFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != content {
		t.Errorf("%s holds %q, want %q", path, got, content)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != perm {
		t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), perm)
	}
}

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.json")
	if err := atomicfile.WriteFile(path, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "first", 0o644)
	if err := atomicfile.WriteFile(path, []byte("second, longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "second, longer", 0o600)
	if got := names(t, dir); !slices.Equal(got, []string{"index.json"}) {
		t.Errorf("directory holds %q, want only index.json", got)
	}
}

func TestFailureMidWriteLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data")
	if err := os.WriteFile(path, []byte("old content"), 0o640); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("source broke")
	err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
		if _, err := w.Write([]byte("half of the new")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write returned %v, want the fill's error", err)
	}
	wantFile(t, path, "old content", 0o640)
	if got := names(t, dir); !slices.Equal(got, []string{"data"}) {
		t.Errorf("directory holds %q after a failed write, want only data", got)
	}
}

func TestFailedRenameRemovesTemp(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory cannot be replaced by a file.
	target := filepath.Join(dir, "occupied")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(target, []byte("x"), 0o644); err == nil {
		t.Fatal("replacing a non-empty directory succeeded")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"occupied"}) {
		t.Errorf("directory holds %q, want only occupied", got)
	}
	if st, err := os.Stat(target); err != nil || !st.IsDir() {
		t.Errorf("target changed: %v %v", st, err)
	}
}

func TestMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "file")
	if err := atomicfile.WriteFile(path, []byte("x"), 0o644); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

func TestCreateCommitUnderLaterName(t *testing.T) {
	dir := t.TempDir()
	f, err := atomicfile.Create(dir, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(f.Name()) != dir {
		t.Errorf("temporary file %s is not in %s", f.Name(), dir)
	}
	if _, err := io.WriteString(f, "blob bytes"); err != nil {
		t.Fatal(err)
	}
	// Not visible under any final name before Commit.
	if got := names(t, dir); len(got) != 1 || got[0] != filepath.Base(f.Name()) {
		t.Errorf("before commit the directory holds %q", got)
	}
	final := filepath.Join(dir, "sha256-of-the-blob")
	if err := f.Commit(final); err != nil {
		t.Fatal(err)
	}
	wantFile(t, final, "blob bytes", 0o644)
	if err := f.Abort(); err != nil {
		t.Errorf("Abort after Commit: %v", err)
	}
	wantFile(t, final, "blob bytes", 0o644)
	if _, err := f.Write([]byte("more")); err == nil {
		t.Error("Write after Commit succeeded")
	}
	if err := f.Commit(final); err == nil {
		t.Error("a second Commit succeeded")
	}
}

func TestCommitOutsideDirRefused(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	f, err := atomicfile.Create(dir, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	if err := f.Commit(filepath.Join(other, "file")); err == nil {
		t.Fatal("Commit into another directory succeeded")
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("temporary file left behind: %q", got)
	}
	if got := names(t, other); len(got) != 0 {
		t.Errorf("file appeared in the other directory: %q", got)
	}
}

func TestAbortRemovesTemp(t *testing.T) {
	dir := t.TempDir()
	f, err := atomicfile.Create(dir, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("discarded"))
	if err := f.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := f.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("directory holds %q after Abort", got)
	}
}
