package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/extract"
)

func newUnpackCmd() *cobra.Command {
	var bootstrap, blobDir, output string
	var blobView bool
	cmd := &cobra.Command{
		Use:   "unpack BOOTSTRAP --blob-dir DIR --output DIR [--blob-view]",
		Short: "Extract a RAFS v6 or v5 image's file tree, or its blobs' uncompressed views",
		Long: `Extract a RAFS v6 or v5 image, verifying every chunk against its digest.

By default the file tree is written into --output (which must be empty or
missing), with modes, mtimes, xattrs, devices and hardlinks; owners are
restored when running as root.

With --blob-view, each blob is instead expanded into --output as
<blob id>.blob.data: every chunk decompressed at its uncompressed offset,
the layout of nydusd's blob cache. The Linux EROFS driver mounts the
bootstrap with these files as devices, in the printed order, each on a
read-only loop device (the kernel takes no plain file as device=):
  mount -t erofs -o ro,device=$(losetup -f --show -r VIEW1) \
        $(losetup -f --show -r BOOTSTRAP) MNT`,
		Args: bootstrapArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			bootstrap = args[0]
			if output == "" {
				return fmt.Errorf("--output is required")
			}
			img, err := extract.Open(bootstrap, blobDir)
			if err != nil {
				return err
			}
			defer img.Close()
			if blobView {
				paths, err := img.BlobViews(cmd.Context(), output)
				if err != nil {
					return err
				}
				for _, p := range paths {
					fmt.Println(p)
				}
				return nil
			}
			if err := img.Tree(cmd.Context(), output, extract.TreeOptions{Owner: os.Geteuid() == 0}); err != nil {
				return err
			}
			logrus.Infof("extracted %s into %s", bootstrap, output)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&blobDir, "blob-dir", "", "directory holding the blobs, each named by its blob id")
	f.StringVar(&output, "output", "", "destination directory (required)")
	f.BoolVar(&blobView, "blob-view", false, "write <blob id>.blob.data uncompressed views instead of the file tree")
	return cmd
}
