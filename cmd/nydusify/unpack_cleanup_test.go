package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/nydus-go/nydusify/internal/fstree"
)

// TestFailedUnpackLeavesNoDirectory: unpack and unpack --blob-view of an
// image whose blob is corrupt fail, and leave none of the directories they
// created for --output (here two levels that did not exist).
func TestFailedUnpackLeavesNoDirectory(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := fstree.Make(src, fstree.Options{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, nil, "build", "--source-dir", src, "--output-dir", out, "--name", "app", "--json")
	if r.code != 0 {
		t.Fatalf("build failed: %s", r.stderr)
	}
	var rep struct{ Blobs []string }
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || len(rep.Blobs) != 1 {
		t.Fatalf("build --json printed %q (%v)", r.stdout, err)
	}
	blob := filepath.Join(out, rep.Blobs[0])
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[100] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"--blob-view"}} {
		parent := t.TempDir()
		dst := filepath.Join(parent, "new", "views")
		r := run(t, nil, append([]string{"unpack", filepath.Join(out, "app.meta"), "--blob-dir", out, "--output", dst}, args...)...)
		if r.code == 0 {
			t.Errorf("unpack %v of a corrupt blob succeeded", args)
		}
		if ents, err := os.ReadDir(parent); err != nil || len(ents) != 0 {
			t.Errorf("failed unpack %v left %v behind (%v)", args, ents, err)
		}
	}
}
