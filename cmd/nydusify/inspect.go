package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/inspect"
	"github.com/nydus-go/nydusify/rafs"
)

func newInspectCmd() *cobra.Command {
	var blobDir string
	var jsonOut, chunks bool
	cmd := &cobra.Command{
		Use:   "inspect BOOTSTRAP [--blob-dir DIR] [--json] [--chunks]",
		Short: "Describe a RAFS v6 bootstrap: superblock, blob table, tree and chunks",
		Long: `Describe a RAFS v6 bootstrap after validating it.

With --blob-dir, every blob of the blob table is opened from that directory
and every chunk is read, decompressed and checked against its digest; any
mismatch is an error (exit status 1).`,
		Args: bootstrapArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := extract.Open(args[0], blobDir)
			if err != nil {
				return err
			}
			defer img.Close()
			var blobs []*rafs.BlobReader
			if blobDir != "" {
				blobs = img.Blobs
			}
			rep, err := inspect.Describe(img.Boot, blobs)
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(rep)
			}
			return rep.WriteText(os.Stdout, chunks)
		},
	}
	f := cmd.Flags()
	f.StringVar(&blobDir, "blob-dir", "", "directory holding the blobs: read and verify every chunk")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&chunks, "chunks", false, "list every chunk index of every file (text output)")
	return cmd
}
