package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
)

func newBuildCmd() *cobra.Command {
	var (
		sourceDir, outputDir, name      string
		compressor, digester, chunkSize string
		fsVersion                       string
		workers                         int
		jsonOut, backendPush            bool
		be                              backendFlags
	)
	var prefetchPatterns func(io.Reader) ([]string, error) // set with the flags below
	cmd := &cobra.Command{
		Use:   "build --source-dir DIR --output-dir DIR [--name NAME]",
		Short: "Build a RAFS v6 (or v5) bootstrap and data blob from a directory",
		Long: `Build a RAFS v6 image (v5 with --fs-version 5) from a directory.

Writes, in the output directory:
  NAME.meta     the bootstrap (metadata), an EROFS image
  <blob id>     the data blob, named by its sha256 id (absent if no file has data)
  output.json   blob ids, sizes, chunk and dedup counts, timings

Identical chunks are stored once. The same tree and options always give
byte-identical outputs, whatever --workers is. Progress shows on a status
line on a terminal, and every 10 s in logs otherwise. A summary (sizes,
dedup, time and speed) is printed on stdout; --json prints output.json's
report instead. On error nothing is left in the output directory.

--backend-push then stores the blob and the bootstrap in a storage backend
(--backend-type s3|localfs, --backend-config as nydusd's backend "config"),
as upstream does: the blob as object_prefix + <blob id>, the bootstrap as
meta_prefix + NAME.meta. A blob the backend already has is not sent again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if sourceDir == "" || outputDir == "" {
				return fmt.Errorf("--source-dir and --output-dir are required")
			}
			var opts rafsbuild.Options
			var err error
			if opts.FsVersion, err = parseFsVersion(fsVersion); err != nil {
				return err
			}
			var pusher backend.Pusher
			switch {
			case backendPush:
				if pusher, err = be.pusher(); err != nil {
					return err
				}
				if ch, ok := pusher.(interface{ Check(context.Context) error }); ok {
					if err := ch.Check(cmd.Context()); err != nil {
						return err
					}
				}
			case be.set():
				return errors.New("--backend-type and --backend-config are used only with --backend-push")
			}
			if opts.Compressor, err = rafs.ParseCompressor(compressor); err != nil {
				return err
			}
			if opts.Digester, err = rafs.ParseDigester(digester); err != nil {
				return err
			}
			if opts.ChunkSize, err = rafs.ParseChunkSize(chunkSize); err != nil {
				return fmt.Errorf("--chunk-size: %w", err)
			}
			opts.Workers = workers
			if opts.PrefetchPatterns, err = prefetchPatterns(cmd.InOrStdin()); err != nil {
				return err
			}
			opts.Logger = logrus.StandardLogger()
			view := newProgressView()
			view.label = "reading file data:"
			opts.Progress, opts.ProgressInterval = view.bytes, view.interval()
			res, err := rafsbuild.BuildDir(cmd.Context(), sourceDir, outputDir, name, opts)
			view.done()
			if err != nil {
				return err
			}
			out := struct {
				*rafsbuild.Result
				Pushed []backend.PushResult `json:"backend_push,omitempty"`
			}{Result: res}
			if pusher != nil {
				blobs := map[string]string{}
				for _, id := range res.Blobs {
					blobs[id] = filepath.Join(outputDir, id)
				}
				if out.Pushed, err = backend.PushFiles(cmd.Context(), pusher, blobs, res.Bootstrap,
					filepath.Join(outputDir, res.Bootstrap), false); err != nil {
					return err
				}
			}
			if jsonOut {
				return printJSON(out)
			}
			writeBuildSummary(cmd.OutOrStdout(), filepath.Join(outputDir, res.Bootstrap), res)
			for _, p := range out.Pushed {
				verb := "pushed"
				if p.Skipped {
					verb = "already there, kept"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "  %-10s %s (%s)\n", verb, p.Location, humanSize(uint64(p.Size)))
			}
			return nil
		},
	}
	f := cmd.Flags()
	prefetchPatterns = prefetchFlags(f, "no prefetch table is written")
	f.StringVar(&sourceDir, "source-dir", "", "directory to build from (required)")
	f.StringVar(&outputDir, "output-dir", "", "new or empty directory for the bootstrap, blob and output.json (created if missing; required)")
	f.StringVar(&name, "name", "image", "bootstrap file name, without the .meta suffix")
	f.StringVar(&compressor, "compressor", "zstd", "chunk compression: none, lz4_block or zstd")
	f.StringVar(&digester, "digester", "blake3", "chunk digest: blake3 or sha256")
	f.StringVar(&chunkSize, "chunk-size", "0x100000", "chunk size, a power of two from 0x1000 to 0x1000000")
	f.StringVar(&fsVersion, "fs-version", "6", "RAFS version of the bootstrap: 6, or 5 (nydusd only; Merkle-hashed inodes)")
	f.IntVar(&workers, "workers", 0, "goroutines hashing and compressing chunks (0: one per CPU); output does not depend on it")
	f.BoolVar(&jsonOut, "json", false, "print the build report (output.json) on stdout")
	f.BoolVar(&backendPush, "backend-push", false, "store the blob and bootstrap in the storage backend (--backend-type, --backend-config)")
	be.register(f, "", "where --backend-push stores the blob and bootstrap")
	return cmd
}
