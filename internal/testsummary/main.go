// Command testsummary reads `go test -json` on stdin and prints what a
// person needs from a long run: one line per package, the full output of
// every failed test, and at the end every skipped test with its reason. With
// -no-skip (CI sets it) a skipped test fails the run, so a green CI run
// means every test, including those needing root, FUSE, EROFS, a registry
// or a tool, really ran.
//
//	go test -json ./... | go run ./internal/testsummary [-no-skip]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type key struct{ pkg, test string }

type summary struct {
	out                  io.Writer
	logs                 map[key][]string
	skipped              []string
	failed               []string
	passed, pkgs, broken int
}

func main() {
	noSkip := flag.Bool("no-skip", false, "fail when any test was skipped")
	flag.Parse()
	s := &summary{out: os.Stdout, logs: map[key][]string{}}
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	os.Exit(s.report(*noSkip))
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event (build errors of a package without tests): show it.
			fmt.Fprintln(s.out, string(line))
			continue
		}
		s.handle(e)
	}
	return sc.Err()
}

func (s *summary) handle(e event) {
	k := key{e.Package, e.Test}
	switch e.Action {
	case "output", "build-output":
		s.logs[k] = append(s.logs[k], e.Output)
	case "skip":
		if e.Test != "" {
			s.skipped = append(s.skipped, fmt.Sprintf("%s %s: %s", short(e.Package), e.Test, reason(s.logs[k])))
		}
		delete(s.logs, k)
	case "pass":
		if e.Test == "" {
			s.pkgs++
			fmt.Fprintf(s.out, "ok   %s %.1fs\n", e.Package, e.Elapsed)
		} else {
			s.passed++
		}
		delete(s.logs, k)
	case "fail", "build-fail":
		if e.Test != "" {
			s.failed = append(s.failed, short(e.Package)+" "+e.Test)
			fmt.Fprintf(s.out, "--- FAIL %s %s\n%s", short(e.Package), e.Test, strings.Join(s.logs[k], ""))
		} else {
			s.broken++
			fmt.Fprintf(s.out, "FAIL %s\n%s", e.Package, strings.Join(s.logs[k], ""))
		}
		delete(s.logs, k)
	}
}

// reason is the skip message: the test's last output line that is not the
// "--- SKIP" line itself.
func reason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "--- SKIP") && !strings.HasPrefix(l, "=== ") {
			return l
		}
	}
	return "(no reason given)"
}

func short(pkg string) string {
	return strings.TrimPrefix(pkg, "github.com/nydus-go/nydusify/")
}

func (s *summary) report(noSkip bool) int {
	sort.Strings(s.skipped)
	fmt.Fprintf(s.out, "\n== %d packages, %d tests passed, %d failed, %d skipped, %d packages failed\n",
		s.pkgs, s.passed, len(s.failed), len(s.skipped), s.broken)
	if len(s.skipped) > 0 {
		fmt.Fprintln(s.out, "skipped (less was checked than a full run checks):")
		for _, l := range s.skipped {
			fmt.Fprintln(s.out, "  "+l)
		}
	}
	for _, f := range s.failed {
		fmt.Fprintln(s.out, "FAILED: "+f)
	}
	switch {
	case len(s.failed) > 0 || s.broken > 0:
		return 1
	case noSkip && len(s.skipped) > 0:
		fmt.Fprintln(s.out, "FAIL: tests were skipped, and -no-skip forbids it here (CI must run every test)")
		return 1
	case s.pkgs == 0:
		fmt.Fprintln(s.out, "FAIL: no package ran")
		return 1
	}
	return 0
}
