package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/extract"
	"github.com/nydus-go/nydusify/inspect"
	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/rafs"
)

func newInspectCmd() *cobra.Command {
	var blobDir, jsonPath string
	var jsonOut, chunks, verify bool
	cmd := &cobra.Command{
		Use:   "inspect BOOTSTRAP [--blob-dir DIR] [--verify] [--json] [--output-json FILE] [--chunks]",
		Short: "Describe a RAFS v6 or v5 bootstrap: superblock, blob table, tree and chunks",
		Long: `Describe a RAFS v6 or v5 bootstrap after validating it. For v5, the root
digest of its Merkle tree is shown.

With --blob-dir, every blob of the blob table is opened from that directory
and the image is verified against its bootstrap: every file's chunk indexes
against the chunk table, and every chunk read, decompressed and checked
against the chunk table's digest; any mismatch is an error (exit status 1).

With --verify (v5 only), every inode digest of the Merkle tree is recomputed
bottom-up; every inode whose digest does not match is listed with its path
(a changed file and each directory above it) and the exit status is 1.`,
		Args: bootstrapArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := extract.Open(args[0], blobDir)
			if err != nil {
				return err
			}
			defer img.Close()
			rep, err := inspect.Describe(cmd.Context(), img.RAFS, inspect.Options{Blobs: blobDir != "", Merkle: verify})
			if errors.Is(err, rafs.ErrNoMerkleTree) {
				return fmt.Errorf("--verify: %w; drop --verify, or give --blob-dir to verify a v6 image's chunks", err)
			}
			if err != nil {
				return err
			}
			if jsonPath != "" {
				data, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				if err := atomicfile.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
					return fmt.Errorf("writing --output-json: %w", err)
				}
			}
			if jsonOut {
				err = printJSON(rep)
			} else {
				err = rep.WriteText(os.Stdout, chunks)
			}
			if err == nil && rep.Failed() {
				err = fmt.Errorf("%d inode(s) of %s fail Merkle verification", len(rep.Merkle.Mismatches), args[0])
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&blobDir, "blob-dir", "", "directory holding the blobs: read and verify every chunk")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&chunks, "chunks", false, "list every chunk index of every file (text output)")
	f.BoolVar(&verify, "verify", false, "RAFS v5: recompute every inode digest of the Merkle tree and list every mismatch")
	f.StringVar(&jsonPath, "output-json", "", "also write the report as JSON to this file")
	return cmd
}
