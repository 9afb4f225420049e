package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// mutated maps a mutator type and the operator gremlins found to the
// operator it writes instead.
var mutated = map[string]map[string]string{
	"CONDITIONALS_BOUNDARY": {"<": "<=", "<=": "<", ">": ">=", ">=": ">"},
	"CONDITIONALS_NEGATION": {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"},
	"ARITHMETIC_BASE":       {"+": "-", "-": "+", "*": "/", "/": "*", "%": "*"},
	"INVERT_NEGATIVES":      {"-": "+"},
	"INCREMENT_DECREMENT":   {"++": "--", "--": "++"},
}

// recheck applies, one at a time, every mutant that lived in a gremlins
// result to the source tree dir and runs the package's tests there, so the
// mutants a new test kills can be counted without a full gremlins run. The
// tree must hold the code the result was made from (line and column must
// still point at the operator).
func recheck(dir, resultPath, pkg, skip string, timeout time.Duration) error {
	data, err := os.ReadFile(resultPath)
	if err != nil {
		return err
	}
	var r result
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	var killed, lived, missing int
	for _, f := range r.Files {
		path := filepath.Join(dir, pkg, f.Filename)
		for _, m := range f.Mutations {
			if m.Status != "LIVED" {
				continue
			}
			orig, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			mut, ok := apply(orig, m.Line, m.Column, m.Type)
			name := fmt.Sprintf("%s/%s:%d:%d %s", pkg, f.Filename, m.Line, m.Column, m.Type)
			if !ok {
				fmt.Printf("MISSING %s\n", name)
				missing++
				continue
			}
			if err := os.WriteFile(path, mut, 0o644); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			args := []string{"test", "-short", "-count=1", "-failfast", "./" + pkg}
			if skip != "" {
				args = append(args, "-skip", skip)
			}
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			cancel()
			if werr := os.WriteFile(path, orig, 0o644); werr != nil {
				return werr
			}
			switch {
			case err == nil:
				fmt.Printf("LIVED   %s\n", name)
				lived++
			case strings.Contains(string(out), "build failed") || strings.Contains(string(out), "[setup failed]"):
				fmt.Printf("NOBUILD %s\n", name)
				missing++
			default:
				fmt.Printf("KILLED  %s\n", name)
				killed++
			}
		}
	}
	fmt.Printf("recheck %s: %d of the lived mutants killed now, %d still live, %d not applied\n", pkg, killed, lived, missing)
	return nil
}

// apply replaces the operator at line:col (1-based, bytes) as the mutator
// type does.
func apply(src []byte, line, col int, typ string) ([]byte, bool) {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(string(src[off:]), '\n')
		if i < 0 {
			return nil, false
		}
		off += i + 1
	}
	off += col - 1
	if off >= len(src) {
		return nil, false
	}
	for _, op := range []string{"<=", ">=", "==", "!=", "++", "--", "<", ">", "+", "-", "*", "/", "%"} {
		if strings.HasPrefix(string(src[off:]), op) {
			to, ok := mutated[typ][op]
			if !ok {
				return nil, false
			}
			out := append([]byte(nil), src[:off]...)
			out = append(out, to...)
			return append(out, src[off+len(op):]...), true
		}
	}
	return nil, false
}
