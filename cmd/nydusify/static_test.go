package main

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStaticBinary builds the binary with `make build`, as the README says,
// and reads its ELF headers: a static executable has no program interpreter
// (PT_INTERP) and needs no shared library.
func TestStaticBinary(t *testing.T) {
	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not installed")
	}
	bin := filepath.Join(t.TempDir(), "nydusify")
	cmd := exec.Command(makePath, "-s", "-C", "../..", "build", "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("make build gave a dynamically linked binary (it has a PT_INTERP program header)")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("binary needs shared libraries %s (err %v)", strings.Join(libs, ", "), err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "nydusify ") {
		t.Errorf("%s --version: %q, %v", bin, out, err)
	}
}
