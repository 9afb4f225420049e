package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// readmeFlags returns, per command, the flags named in the first column of
// the tables under the README's "### `nydusify CMD`" headings.
func readmeFlags(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("^### `nydusify ([a-z]+)`")
	flagName := regexp.MustCompile("`--([a-z0-9-]+)`")
	out := map[string][]string{}
	cmd := ""
	for _, line := range strings.Split(string(data), "\n") {
		if m := heading.FindStringSubmatch(line); m != nil {
			cmd = m[1]
			out[cmd] = nil
			continue
		}
		if strings.HasPrefix(line, "#") {
			cmd = ""
		}
		if cmd == "" || !strings.HasPrefix(line, "| ") {
			continue
		}
		first := strings.SplitN(line[2:], "|", 2)[0]
		for _, m := range flagName.FindAllStringSubmatch(first, -1) {
			out[cmd] = append(out[cmd], m[1])
		}
	}
	return out
}

// TestReadmeFlags: the README documents every flag of every command, and no
// flag that does not exist.
func TestReadmeFlags(t *testing.T) {
	documented := readmeFlags(t)
	for _, c := range newRootCmd().Commands() {
		var have []string
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && f.Name != "help" {
				have = append(have, f.Name)
			}
		})
		if len(have) == 0 {
			continue
		}
		doc, ok := documented[c.Name()]
		if !ok {
			t.Errorf("README has no \"### `nydusify %s`\" flag table", c.Name())
			continue
		}
		for _, f := range have {
			if !slices.Contains(doc, f) {
				t.Errorf("nydusify %s --%s is missing from the README", c.Name(), f)
			}
		}
		for _, f := range doc {
			if !slices.Contains(have, f) {
				t.Errorf("the README documents nydusify %s --%s, which does not exist", c.Name(), f)
			}
		}
	}
}
