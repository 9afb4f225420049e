// Command mkfstree writes the fstree sample tree into a directory, for the
// demo and for manual experiments: mkfstree [-root] [-big] [-oci LAYOUT:TAG] DIR.
// With -oci it also packs the tree as a one-layer OCI image into an OCI
// image layout, the demo's source image.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/nydus-go/nydusify/internal/fstree"
	"github.com/nydus-go/nydusify/internal/treetar"
)

func main() {
	var opts fstree.Options
	var oci string
	flag.BoolVar(&opts.Root, "root", false, "add devices, large uids, trusted.* and security.capability xattrs (needs root)")
	flag.BoolVar(&opts.Big, "big", false, "add a sparse 5 GiB file")
	flag.StringVar(&oci, "oci", "", "also write the tree as a one-layer image into this OCI layout, as LAYOUT:TAG")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkfstree [-root] [-big] [-oci LAYOUT:TAG] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	err := fstree.Make(dir, opts)
	if err == nil && oci != "" {
		err = writeImage(dir, oci)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkfstree:", err)
		os.Exit(1)
	}
}

// writeImage packs dir as a gzip layer (PAX tar with xattrs and devices)
// into an OCI layout at path:tag.
func writeImage(dir, ref string) error {
	path, tag, ok := strings.Cut(ref, ":")
	if !ok || path == "" || tag == "" {
		return fmt.Errorf("-oci wants LAYOUT:TAG, got %q", ref)
	}
	return treetar.WriteLayout(dir, path, tag)
}
