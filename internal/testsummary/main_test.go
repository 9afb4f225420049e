package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goTestJSON runs the real `go test -json` on a scratch module holding the
// given test file and returns its event stream.
func goTestJSON(t *testing.T, testFile string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":        "module scratch\n\ngo 1.22\n",
		"x_test.go":     testFile,
		"sub/y.go":      "package sub\n",
		"sub/y_test.go": "package sub\n\nimport \"testing\"\n\nfunc TestSub(t *testing.T) {}\n",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-count=1", "-json", "./...")
	cmd.Dir = dir
	out, _ := cmd.Output() // a failing test makes go test exit 1
	return out
}

func summarize(t *testing.T, stream []byte, noSkip bool) (string, int) {
	t.Helper()
	var out bytes.Buffer
	s := &summary{out: &out, logs: map[key][]string{}}
	if err := s.read(bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	code := s.report(noSkip)
	return out.String(), code
}

func TestSummary(t *testing.T) {
	stream := goTestJSON(t, `package scratch

import "testing"

func TestOK(t *testing.T) {}

func TestNeedsRoot(t *testing.T) { t.Skip("needs root for mount(2)") }

func TestTable(t *testing.T) {
	t.Run("with fuse", func(t *testing.T) { t.Skip("no /dev/fuse") })
	t.Run("plain", func(t *testing.T) {})
}
`)
	out, code := summarize(t, stream, false)
	if code != 0 {
		t.Errorf("exit %d for a run with skips only; output:\n%s", code, out)
	}
	for _, want := range []string{"TestNeedsRoot: x_test.go:7: needs root for mount(2)", "TestTable/with_fuse: x_test.go:10: no /dev/fuse", "2 skipped", "ok   scratch/sub"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out, code := summarize(t, stream, true); code != 1 || !strings.Contains(out, "-no-skip") {
		t.Errorf("-no-skip with skips: exit %d, output:\n%s", code, out)
	}

	failing := goTestJSON(t, `package scratch

import "testing"

func TestBroken(t *testing.T) { t.Log("the cause"); t.Fatal("wrong") }
`)
	out, code = summarize(t, failing, false)
	if code != 1 || !strings.Contains(out, "FAILED: scratch TestBroken") || !strings.Contains(out, "the cause") {
		t.Errorf("failing test: exit %d, output:\n%s", code, out)
	}

	noBuild := goTestJSON(t, "package scratch\n\nfunc TestX(t *testing.T) {}\n") // testing not imported
	if out, code := summarize(t, noBuild, false); code != 1 {
		t.Errorf("package that does not build: exit %d, output:\n%s", code, out)
	}
}
