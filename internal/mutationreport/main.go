// Command mutationreport summarises the JSON results gremlins wrote for each
// package (scripts/mutation.sh): mutants killed, lived, timed out and not
// covered, the efficacy (killed over killed+lived) and every mutant that
// lived, so each can be killed by a test or explained as equivalent.
//
//	go run ./internal/mutationreport DIR pkg...
//	go run ./internal/mutationreport -recheck TREE RESULT.json pkg [skip-regexp]
//
// The second form applies each mutant that lived in RESULT.json to TREE (a
// copy of the code the result was made from, with the tests to judge) and
// runs the package's tests again: the mutants new tests kill.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

type result struct {
	Files []struct {
		Filename  string `json:"file_name"`
		Mutations []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Line   int    `json:"line"`
			Column int    `json:"column"`
		} `json:"mutations"`
	} `json:"files"`
	NotCovered int     `json:"mutants_not_covered"`
	Elapsed    float64 `json:"elapsed_time"`
}

func main() {
	if len(os.Args) >= 5 && os.Args[1] == "-recheck" {
		skip := ""
		if len(os.Args) > 5 {
			skip = os.Args[5]
		}
		if err := recheck(os.Args[2], os.Args[3], os.Args[4], skip, 5*time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: mutationreport DIR pkg...")
		os.Exit(2)
	}
	dir := os.Args[1]
	var lived []string
	fmt.Printf("%-12s %7s %6s %5s %8s %11s %8s\n", "package", "killed", "lived", "timed", "notcov", "efficacy", "time")
	for _, pkg := range os.Args[2:] {
		data, err := os.ReadFile(filepath.Join(dir, pkg+".json"))
		if err != nil {
			fmt.Printf("%-12s no result: %v\n", pkg, err)
			continue
		}
		var r result
		if err := json.Unmarshal(data, &r); err != nil {
			fmt.Printf("%-12s bad result: %v\n", pkg, err)
			continue
		}
		count := map[string]int{}
		for _, f := range r.Files {
			for _, m := range f.Mutations {
				count[m.Status]++
				if m.Status == "LIVED" {
					lived = append(lived, fmt.Sprintf("%s/%s:%d:%d %s", pkg, f.Filename, m.Line, m.Column, m.Type))
				}
			}
		}
		k, l := count["KILLED"], count["LIVED"]
		eff := 0.0
		if k+l > 0 {
			eff = 100 * float64(k) / float64(k+l)
		}
		fmt.Printf("%-12s %7d %6d %5d %8d %10.1f%% %7.0fs\n", pkg, k, l, count["TIMED OUT"], r.NotCovered, eff, r.Elapsed)
	}
	sort.Strings(lived)
	if len(lived) > 0 {
		fmt.Println("\nlived:")
		for _, s := range lived {
			fmt.Println("  " + s)
		}
	}
}
