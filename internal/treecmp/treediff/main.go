// Command treediff compares two directory trees the way the tests do
// (content, type, mode, owner, size, rdev, symlink target, xattrs, hardlink
// groups, mtime) and prints every difference: treediff WANT GOT.
// It exits 1 when the trees differ.
package main

import (
	"fmt"
	"os"

	"github.com/nydus-go/nydusify/internal/treecmp"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: treediff WANT GOT")
		os.Exit(2)
	}
	diffs, err := treecmp.Compare(os.Args[1], os.Args[2], treecmp.Options{IgnoreRootMtime: true, IgnoreDirSize: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "treediff:", err)
		os.Exit(2)
	}
	for _, d := range diffs {
		fmt.Println(d)
	}
	if len(diffs) > 0 {
		os.Exit(1)
	}
	fmt.Printf("no differences between %s and %s\n", os.Args[1], os.Args[2])
}
