package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// prefetchFlags adds --prefetch-patterns and --prefetch-dir, upstream
// nydusify's spellings, and returns a function giving the patterns they
// select: the lines of stdin, the one directory, or nil when neither is set.
func prefetchFlags(f *pflag.FlagSet, none string) func(stdin io.Reader) ([]string, error) {
	var fromStdin bool
	var dir string
	f.BoolVar(&fromStdin, "prefetch-patterns", false, "read prefetch paths, one absolute path per line, from stdin; without it or --prefetch-dir, "+none)
	f.StringVar(&dir, "prefetch-dir", "", "one absolute path to list in the prefetch table")
	return func(stdin io.Reader) ([]string, error) {
		switch {
		case fromStdin && dir != "":
			return nil, errors.New("give --prefetch-patterns or --prefetch-dir, not both")
		case dir != "":
			return []string{dir}, nil
		case !fromStdin:
			return nil, nil
		}
		var out []string
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				out = append(out, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading prefetch patterns from stdin: %w", err)
		}
		return out, nil
	}
}
