package depcheck

import (
	"slices"
	"strings"
	"testing"
)

// The module as it is must keep every rule.
func TestModuleRules(t *testing.T) {
	mod, pkgs, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(mod, "/nydusify") {
		t.Fatalf("module %q: not the nydusify module", mod)
	}
	for _, v := range Check(mod, pkgs, Rules) {
		t.Error(v)
	}
}

const fakeMod = "example.com/m"

// graph builds a package list from "pkg: import import..." lines, with
// module-relative paths written as "./x".
func graph(lines ...string) []Package {
	abs := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "./"); ok {
			return fakeMod + "/" + rest
		}
		return p
	}
	var pkgs []Package
	for _, l := range lines {
		name, imports, _ := strings.Cut(l, ":")
		p := Package{ImportPath: abs(strings.TrimSpace(name))}
		for _, imp := range strings.Fields(imports) {
			p.Imports = append(p.Imports, abs(imp))
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// clean is a graph of this module's shape that keeps every rule.
var clean = []string{
	"./rafs: bytes github.com/klauspost/compress/zstd ./internal/verify",
	"./tarstream: bufio github.com/klauspost/compress/gzip",
	"./rafsbuild: ./rafs golang.org/x/sys/unix",
	"./internal/verify: github.com/opencontainers/go-digest",
	"./internal/treecmp: ./internal/xattr",
	"./internal/xattr: golang.org/x/sys/unix",
	"./registry: github.com/google/go-containerregistry/pkg/v1/remote",
	"./layout: ./internal/verify",
	"./archive: ./layout ./internal/verify",
	"./backend: ./internal/verify net/http",
	"./packer: ./internal/verify",
	"./checker: ./rafs ./tarstream ./registry",
	"./converter: ./rafsbuild ./tarstream ./packer ./registry github.com/google/go-containerregistry/pkg/v1/remote",
	"./cmd/nydusify: ./converter github.com/spf13/cobra",
	"./zran: bytes hash/crc32", "hash/crc32:",
	"bytes:", "bufio:", "golang.org/x/sys/unix:", "github.com/opencontainers/go-digest:",
	"github.com/klauspost/compress/zstd:", "github.com/klauspost/compress/gzip:",
	"github.com/google/go-containerregistry/pkg/v1/remote: net/http",
	"net/http: net", "net:", "github.com/spf13/cobra:",
}

func violations(t *testing.T, extra ...string) []string {
	t.Helper()
	var got []string
	for _, v := range Check(fakeMod, graph(append(slices.Clone(clean), extra...)...), Rules) {
		got = append(got, strings.ReplaceAll(strings.Join(v.Chain, " -> "), fakeMod+"/", "./"))
	}
	return got
}

// The rule table itself must catch each kind of violating import, directly
// and through other packages, and name the chain that leads to it.
func TestRulesCatchViolations(t *testing.T) {
	if got := violations(t); len(got) != 0 {
		t.Fatalf("clean graph: violations %q", got)
	}
	for _, tc := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"rafs uses the network", []string{"./rafs/fetch: net/http"},
			[]string{"./rafs/fetch -> net/http"}},
		{"rafs reaches ggcr through an internal package",
			[]string{"./rafs/remote: ./internal/reg", "./internal/reg: github.com/google/go-containerregistry/pkg/v1/remote"},
			[]string{"./rafs/remote -> ./internal/reg -> github.com/google/go-containerregistry/pkg/v1/remote"}},
		{"rafs uses FUSE", []string{"./rafs/mnt: github.com/hanwen/go-fuse/v2/fs", "github.com/hanwen/go-fuse/v2/fs:"},
			[]string{"./rafs/mnt -> github.com/hanwen/go-fuse/v2/fs"}},
		{"rafs logs through logrus", []string{"./rafs/log: github.com/sirupsen/logrus", "github.com/sirupsen/logrus:"},
			[]string{"./rafs/log -> github.com/sirupsen/logrus"}},
		{"rafs imports a top-level package", []string{"./rafs/x: ./tarstream"},
			[]string{"./rafs/x -> ./tarstream"}},
		{"tarstream imports a top-level package", []string{"./tarstream/x: ./rafs"},
			[]string{"./tarstream/x -> ./rafs"}},
		{"zran knows RAFS", []string{"./zran/x: ./rafs"},
			[]string{"./zran/x -> ./rafs"}},
		{"rafsbuild reaches the network", []string{"./rafsbuild/x: ./converter"},
			[]string{"./rafsbuild/x -> ./converter -> github.com/google/go-containerregistry/pkg/v1/remote"}},
		{"an internal package imports a top-level one", []string{"./internal/x: ./rafs"},
			[]string{"./internal/x -> ./rafs"}},
		{"an image place knows Nydus", []string{"./layout/x: ./rafs"},
			[]string{"./layout/x -> ./rafs"}},
		{"packer publishes", []string{"./packer/x: ./registry"},
			[]string{"./packer/x -> ./registry"}},
		{"checker shares the converter's merge", []string{"./checker/x: ./converter"},
			[]string{"./checker/x -> ./converter"}},
		{"a package imports a command", []string{"./tool: ./cmd/nydusify/config", "./cmd/nydusify/config:"},
			[]string{"./tool -> ./cmd/nydusify/config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := violations(t, tc.extra...); !slices.Equal(got, tc.want) {
				t.Errorf("violations:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// A rule for a package that does not exist reports that, rather than
// passing because it checks nothing.
func TestRuleMatchingNothing(t *testing.T) {
	rules := append(slices.Clone(Rules), Rule{Pkg: "./nosuchpkg/...", NoDeps: []string{"net"}})
	var got []string
	for _, v := range Check(fakeMod, graph(clean...), rules) {
		got = append(got, v.String())
	}
	if len(got) != 1 || got[0] != "rule ./nosuchpkg/... matches no package of the module" {
		t.Errorf("violations %q, want one saying ./nosuchpkg/... matches nothing", got)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, path string
		want      bool
	}{
		{"net", "net", true},
		{"net", "net/http", false},
		{"net", "network", false},
		{"github.com/google/go-containerregistry/...", "github.com/google/go-containerregistry", true},
		{"github.com/google/go-containerregistry/...", "github.com/google/go-containerregistry/pkg/v1", true},
		{"github.com/google/go-containerregistry/...", "github.com/google/go-containerregistryx", false},
		{"./...", fakeMod, true},
		{"./...", fakeMod + "/a/b", true},
		{"./...", "example.com/mx", false},
		{"./rafs/...", fakeMod + "/rafsbuild", false},
		{"./rafs/...", fakeMod + "/rafs/v5", true},
	} {
		if got := match(fakeMod, tc.pat, tc.path); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pat, tc.path, got, tc.want)
		}
	}
}
