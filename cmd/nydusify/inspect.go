package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/inspect"
)

func newInspectCmd() *cobra.Command {
	var blobDir string
	var jsonOut, chunks bool
	cmd := &cobra.Command{
		Use:   "inspect BOOTSTRAP [--blob-dir DIR] [--json] [--chunks]",
		Short: "Describe a RAFS v6 bootstrap: superblock, blob table, tree and chunks",
		Long: `Describe a RAFS v6 bootstrap after validating it.

With --blob-dir, every blob of the blob table is opened from that directory
and the image is verified against its bootstrap: every file's chunk indexes
against the chunk table, and every chunk read, decompressed and checked
against the chunk table's digest; any mismatch is an error (exit status 1).`,
		Args: bootstrapArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := extract.Open(args[0], blobDir)
			if err != nil {
				return err
			}
			defer img.Close()
			rep, err := inspect.Describe(cmd.Context(), img.RAFS, blobDir != "")
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
