// Package depcheck states the import rules of this module as a table and
// checks a package graph against it. The test in this package loads the
// module's real graph with `go list -deps -json` and fails on any
// violation, so CI enforces what the package docs promise: the format
// package stays free of the network, registries and FUSE, the builder stays
// off the network, nothing imports the commands, and internal helpers sit
// below every top-level package.
//
// A rule covers the packages matched by its Pkg pattern. Patterns are Go
// import-path patterns: "net/http" matches that package only, a trailing
// "/..." also matches everything below it, and a leading "./" makes the
// pattern relative to the module ("./rafs/..." is the rafs package and its
// subpackages). The graph is the build graph without tests, so a test may
// import what its package may not.
//
// To pin a new package, add one line to Rules.
package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
)

// Rule constrains the dependencies of the packages matching Pkg.
type Rule struct {
	Pkg    string   // the packages the rule covers
	Except []string // packages matching Pkg that it does not cover

	// NoDeps are packages that must not be reached, directly or through
	// other packages.
	NoDeps []string
	// Module, when not nil, lists the only packages of this module that
	// may be imported directly; nil leaves module imports unconstrained.
	Module []string

	Why string // shown with each violation
}

var (
	network  = []string{"net", "net/http"}
	ggcr     = "github.com/google/go-containerregistry/..."
	fuse     = "github.com/hanwen/go-fuse/..."
	cli      = []string{"github.com/spf13/cobra/...", "github.com/sirupsen/logrus/..."}
	internal = "./internal/..."
)

// Rules are the module's import rules.
var Rules = []Rule{
	{Pkg: "./rafs/...", NoDeps: join(network, ggcr, fuse, cli), Module: []string{"./rafs/...", internal},
		Why: "the format package parses bytes; fetching, mounting and the CLI sit above it"},
	{Pkg: "./tarstream/...", Module: []string{"./tarstream/...", internal},
		Why: "reading a layer stream needs nothing else of this module"},
	{Pkg: "./rafsbuild/...", NoDeps: join(network, ggcr),
		Why: "building writes a bootstrap and blob from a stream; registries are the converter's business"},
	{Pkg: "./registry/...", Module: []string{"./registry/...", internal},
		Why: "an image place speaks OCI and knows nothing of Nydus or of other places"},
	{Pkg: "./layout/...", Module: []string{"./layout/...", internal},
		Why: "an image place speaks OCI and knows nothing of Nydus or of other places"},
	{Pkg: "./archive/...", Module: []string{"./archive/...", "./layout/...", internal},
		Why: "an image place speaks OCI and knows nothing of Nydus (an OCI archive is a layout in a tar)"},
	{Pkg: "./backend/...", Module: []string{"./backend/...", internal}, NoDeps: []string{fuse},
		Why: "blob storage reads ranges by blob id and knows nothing of RAFS"},
	{Pkg: "./packer/...", NoDeps: []string{"./rafsbuild/...", "./registry/...", "./layout/...", "./archive/...", fuse},
		Why: "packer shapes an image from the build's output; it neither builds nor publishes"},
	{Pkg: "./checker/...", NoDeps: []string{"./rafsbuild/...", "./converter/..."},
		Why: "the checker must not share the converter's code, or a converter bug could hide behind it"},
	{Pkg: "./zran/...", Module: []string{"./zran/..."},
		Why: "gzip random access knows nothing of RAFS, images or the rest of this module"},
	{Pkg: "./internal/...", Module: []string{internal},
		Why: "internal helpers serve the top-level packages and never depend on them"},
	{Pkg: "./...", Except: []string{"./cmd/..."}, NoDeps: []string{"./cmd/..."},
		Why: "commands are the top of the graph"},
}

func join(groups ...any) []string {
	var out []string
	for _, g := range groups {
		switch g := g.(type) {
		case string:
			out = append(out, g)
		case []string:
			out = append(out, g...)
		}
	}
	return out
}

// Package is the part of `go list -json` output the rules need.
type Package struct {
	ImportPath string
	Imports    []string
}

// Violation is one package breaking one rule.
type Violation struct {
	Rule  Rule
	Pkg   string
	Chain []string // Pkg, the packages leading to it, and the forbidden one; nil when the rule matched no package
}

func (v Violation) String() string {
	if len(v.Chain) < 2 {
		return fmt.Sprintf("rule %s matches no package of the module", v.Rule.Pkg)
	}
	return fmt.Sprintf("%s imports %s (rule %s: %s)", v.Pkg, strings.Join(v.Chain[1:], " -> "), v.Rule.Pkg, v.Rule.Why)
}

// Load lists the packages of the module containing dir, with all their
// dependencies, as `go list -deps -json` reports them, and returns them
// with the module's path.
func Load(dir string) (string, []Package, error) {
	out, err := goCmd(dir, "list", "-m")
	if err != nil {
		return "", nil, err
	}
	mod := strings.TrimSpace(string(out))
	out, err = goCmd(dir, "list", "-deps", "-json=ImportPath,Imports", mod+"/...")
	if err != nil {
		return "", nil, err
	}
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", nil, fmt.Errorf("go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return mod, pkgs, nil
}

func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// Check returns every violation of rules in the graph pkgs of module mod.
// A rule whose Pkg matches no package of the module is reported too, so a
// renamed package cannot leave its rule silently checking nothing.
func Check(mod string, pkgs []Package, rules []Rule) []Violation {
	byPath := make(map[string]*Package, len(pkgs))
	for i := range pkgs {
		byPath[pkgs[i].ImportPath] = &pkgs[i]
	}
	inModule := func(path string) bool { return path == mod || strings.HasPrefix(path, mod+"/") }
	var out []Violation
	for _, r := range rules {
		covered := 0
		for _, p := range pkgs {
			if !inModule(p.ImportPath) || !match(mod, r.Pkg, p.ImportPath) || anyMatch(mod, r.Except, p.ImportPath) {
				continue
			}
			covered++
			if r.Module != nil {
				for _, imp := range p.Imports {
					if inModule(imp) && !anyMatch(mod, r.Module, imp) {
						out = append(out, Violation{Rule: r, Pkg: p.ImportPath, Chain: []string{p.ImportPath, imp}})
					}
				}
			}
			if len(r.NoDeps) > 0 {
				for _, chain := range forbidden(byPath, p.ImportPath, func(path string) bool { return anyMatch(mod, r.NoDeps, path) }) {
					out = append(out, Violation{Rule: r, Pkg: p.ImportPath, Chain: chain})
				}
			}
		}
		if covered == 0 {
			out = append(out, Violation{Rule: r})
		}
	}
	return out
}

// forbidden walks the imports of from breadth first and returns, for each
// reachable package that bad matches, the shortest import chain to it. The
// walk does not continue below a forbidden package.
func forbidden(byPath map[string]*Package, from string, bad func(string) bool) [][]string {
	parent := map[string]string{from: ""}
	queue := []string{from}
	var found []string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p := byPath[cur]
		if p == nil {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := parent[imp]; seen {
				continue
			}
			parent[imp] = cur
			if bad(imp) {
				found = append(found, imp)
				continue
			}
			queue = append(queue, imp)
		}
	}
	var chains [][]string
	for _, f := range found {
		var chain []string
		for at := f; at != ""; at = parent[at] {
			chain = append(chain, at)
		}
		slices.Reverse(chain)
		chains = append(chains, chain)
	}
	return chains
}

func anyMatch(mod string, patterns []string, path string) bool {
	for _, pat := range patterns {
		if match(mod, pat, path) {
			return true
		}
	}
	return false
}

// match reports whether path matches the pattern pat (see the package
// doc for the syntax).
func match(mod, pat, path string) bool {
	if rest, ok := strings.CutPrefix(pat, "./"); ok {
		pat = mod + "/" + rest
	}
	if base, ok := strings.CutSuffix(pat, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pat
}
