package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/imageref"
)

func newCopyCmd() *cobra.Command {
	var (
		opts          converter.CopyOptions
		platform      string
		plainHTTP     bool
		sourceBackend backendFlags
	)
	cmd := &cobra.Command{
		Use:   "copy --source REF --target REF",
		Short: "Copy a Nydus image, optionally taking its blobs out of a storage backend",
		Long: `Copy one platform's Nydus image between registries and OCI layouts.

With --source-backend-type and --source-backend-config, the source is an image
converted in storage-backend mode (its manifest holds only the bootstrap
layer): the blobs its bootstrap lists are streamed from that backend into the
target, before the bootstrap layer in the manifest and before its diff_id in
the config, so the copy is a self-contained image that reads from its
registry alone (upstream's copy does the same).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Source == "" || opts.Target == "" {
				return errors.New("--source and --target are required")
			}
			var err error
			if opts.Platform, err = imageref.ParsePlatform(platform); err != nil {
				return err
			}
			if sourceBackend.set() {
				if opts.SourceBackend, err = sourceBackend.open(); err != nil {
					return err
				}
			}
			opts.SourceRegistry.PlainHTTP, opts.TargetRegistry.PlainHTTP = plainHTTP, plainHTTP
			noteLoopback(plainHTTP, opts.Source, opts.Target)
			rep, err := converter.Copy(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied %s to %s (%s", rep.Source, rep.Target, rep.Digest)
			if len(rep.Blobs) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), ", %d blobs taken from the source backend", len(rep.Blobs))
			}
			fmt.Fprintln(cmd.OutOrStdout(), ")")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Source, "source", "", "the Nydus image to copy (required)")
	f.StringVar(&opts.Target, "target", "", "where to copy it: registry ref or oci:DIR[:TAG] (required)")
	f.StringVar(&platform, "platform", "", "platform to copy: picks from an index (default: the host's linux/<arch> from an index, a single image as it is)")
	f.BoolVar(&opts.SourceRegistry.Insecure, "source-insecure", false, "skip TLS certificate verification for the source registry")
	f.BoolVar(&opts.TargetRegistry.Insecure, "target-insecure", false, "skip TLS certificate verification for the target registry")
	f.BoolVar(&plainHTTP, "plain-http", false, "allow plain HTTP (no TLS) to both registries; loopback registries are allowed it without this flag")
	f.StringVar(&opts.WorkDir, "work-dir", "", "directory for the bootstrap while copying (default: the system temp dir)")
	sourceBackend.register(f, "source-", "where the source's blobs are, for an image converted with --backend-type")
	return cmd
}
