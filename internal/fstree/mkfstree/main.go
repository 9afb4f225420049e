// Command mkfstree writes the fstree sample tree into a directory, for the
// demo and for manual experiments: mkfstree [-root] [-big] DIR.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nydus-go/nydusify/internal/fstree"
)

func main() {
	var opts fstree.Options
	flag.BoolVar(&opts.Root, "root", false, "add devices, large uids, trusted.* and security.capability xattrs (needs root)")
	flag.BoolVar(&opts.Big, "big", false, "add a sparse 5 GiB file")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkfstree [-root] [-big] DIR")
		os.Exit(2)
	}
	if err := fstree.Make(flag.Arg(0), opts); err != nil {
		fmt.Fprintln(os.Stderr, "mkfstree:", err)
		os.Exit(1)
	}
}
