package depcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayoutDocumented: every package of the module is named, as `path`, in
// the README's layout table and in docs/architecture.md, and neither names a
// top-level package that does not exist, so both stay true to the tree.
func TestLayoutDocumented(t *testing.T) {
	mod, pkgs, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	arch, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(readme)
	if i := strings.Index(table, "\n## Layout"); i >= 0 {
		table = table[i:]
	}
	exists := map[string]bool{}
	for _, p := range pkgs {
		rel, ok := strings.CutPrefix(p.ImportPath, mod+"/")
		if !ok || strings.HasSuffix(rel, "_test") {
			continue
		}
		exists[rel] = true
		// Commands and tools under a documented parent (internal/fstree/mkfstree)
		// are covered by their parent's entry.
		if parent := filepath.Dir(rel); exists[parent] || strings.HasPrefix(rel, "internal/") && strings.Count(rel, "/") > 1 {
			continue
		}
		name := "`" + rel + "`"
		if !strings.Contains(table, name) {
			t.Errorf("the README's layout table does not name %s", name)
		}
		if !strings.HasPrefix(rel, "internal/") && !strings.HasPrefix(rel, "bench") && !strings.Contains(string(arch), name) {
			t.Errorf("docs/architecture.md does not name %s", name)
		}
	}
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.SplitN(line[2:], "|", 2)[0]
		for _, f := range strings.Split(cell, ",") {
			name := strings.Trim(strings.TrimSpace(f), "`")
			if name != "" && !exists[name] {
				t.Errorf("the README's layout table names %q, which is not a package of the module", name)
			}
		}
	}
}
