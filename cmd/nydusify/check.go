package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/internal/atomicfile"
)

func newCheckCmd() *cobra.Command {
	var (
		opts               checker.Options
		platform, jsonPath string
		plainHTTP          bool
		targetBackend      backendFlags
	)
	cmd := &cobra.Command{
		Use:   "check --target REF [--source REF]",
		Short: "Prove a Nydus image equals its source image, reporting every difference",
		Long: `Check a Nydus image; without --mount, no root and no mount are needed.

Rules, all run and all reported:
  manifest    layer media types and annotations, diff_ids, bootstrap diff_id,
              runtime config equal to the source's
  bootstrap   the bootstrap validates and walks; its blob table names manifest
              layers with their sizes
  filesystem  (with --source) the source layers flattened with whiteout rules
              against the Nydus tree read through its blobs, every chunk
              verified: paths, type, mode, owner, size, rdev, symlink target,
              xattrs, content, hardlink groups, mtime

With --mount the filesystem rule reads the Nydus tree instead through a real
read-only FUSE mount of the image in the work directory (root and /dev/fuse
needed), as a container sees it; a chunk failing its digest reads as EIO and
its files are reported unreadable, with the cause logged. The mount is gone
when check returns.

For an image converted in storage-backend mode (its manifest holds only the
bootstrap layer), --target-backend-type and --target-backend-config say where
its blobs are; they are read from there by blob id and verified the same way.

Exit status 1 when any problem is found.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Target == "" {
				return fmt.Errorf("--target is required")
			}
			var err error
			if opts.Platform, err = imageref.ParsePlatform(platform); err != nil {
				return err
			}
			opts.SourceRegistry.PlainHTTP, opts.TargetRegistry.PlainHTTP = plainHTTP, plainHTTP
			if targetBackend.set() {
				if opts.TargetBackend, err = targetBackend.open(); err != nil {
					return err
				}
			}
			noteLoopback(plainHTTP, opts.Target, opts.Source)
			if opts.Mount {
				// Causes of EIO through the mount go to the log as warnings.
				opts.Logger = logrus.StandardLogger()
			}
			rep, err := checker.Check(cmd.Context(), opts)
			if err != nil {
				return err
			}
			for _, p := range rep.Problems {
				fmt.Println(p)
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
			if !rep.OK {
				return fmt.Errorf("%d problem(s) found in %s", len(rep.Problems), rep.Target)
			}
			how := ""
			if rep.Mounted {
				how = ", read through a FUSE mount"
			}
			verdict := "check passed"
			if rep.Platform != "" {
				verdict += " for " + rep.Platform // one platform of an index is checked per run
			}
			if rep.Source != "" {
				fmt.Printf("%s: %s equals its source %s (rules %s; %d paths compared%s)\n",
					verdict, rep.Target, rep.Source, strings.Join(rep.Rules, ", "), rep.Files, how)
			} else {
				fmt.Printf("%s: %s is a valid Nydus image (rules %s)\n", verdict, rep.Target, strings.Join(rep.Rules, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Target, "target", "", "the Nydus image (required)")
	f.StringVar(&opts.Source, "source", "", "the image it was converted from (enables the filesystem rule)")
	f.StringVar(&platform, "platform", "", "platform to check: picks from an index; a single-platform image must be it (default: the host's linux/<arch> from an index, a single image as it is)")
	f.BoolVar(&opts.SourceRegistry.Insecure, "source-insecure", false, "skip TLS certificate verification for the source registry")
	f.BoolVar(&opts.TargetRegistry.Insecure, "target-insecure", false, "skip TLS certificate verification for the target registry")
	f.BoolVar(&plainHTTP, "plain-http", false, "allow plain HTTP (no TLS) to both registries; loopback registries (localhost, 127.0.0.0/8, ::1) are allowed it without this flag")
	f.StringSliceVar(&opts.IgnoreXattrs, "ignore-xattr", nil, "xattr names left out of the comparison (e.g. security.selinux)")
	f.StringVar(&jsonPath, "output-json", "", "write the report as JSON to this file")
	f.StringVar(&opts.WorkDir, "work-dir", "", "directory for the bootstrap and blobs while checking (default: the system temp dir)")
	f.BoolVar(&opts.Mount, "mount", false, "compare through a real FUSE mount of the image (needs root)")
	targetBackend.register(f, "target-", "where the target's blobs are, for an image converted with --backend-type")
	return cmd
}
