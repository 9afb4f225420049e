// Command nydusify turns directories and OCI images into Nydus (RAFS v6 or v5)
// images and proves them correct. This package only parses flags and calls
// the library packages.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd, err := newRootCmd().ExecuteContextC(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nydusify:", err)
		if h := hint(cmd, err); h != "" {
			fmt.Fprintln(os.Stderr, "hint:", h)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:           "nydusify",
		Short:         "Convert OCI images to Nydus (RAFS v6 or v5); build, check, mount, inspect and unpack them, in pure Go",
		Version:       readVersion().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			lvl, err := logrus.ParseLevel(logLevel)
			if err != nil {
				return err
			}
			logrus.SetLevel(lvl)
			logrus.SetOutput(os.Stderr)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(newBuildCmd(), newConvertCmd(), newCopyCmd(), newCheckCmd(), newMountCmd(), newInspectCmd(), newUnpackCmd(), newVersionCmd())
	return root
}

// bootstrapArg requires exactly one argument, the bootstrap file, with an
// error that shows the usage instead of cobra's argument count.
func bootstrapArg(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return fmt.Errorf("%s needs the bootstrap file to read: nydusify %s", cmd.Name(), cmd.Use)
	default:
		return fmt.Errorf("%s takes one bootstrap file, got %d arguments (%q): nydusify %s", cmd.Name(), len(args), args, cmd.Use)
	}
}

// parseFsVersion reads --fs-version.
func parseFsVersion(s string) (int, error) {
	switch s {
	case "5":
		return 5, nil
	case "6":
		return 6, nil
	}
	return 0, fmt.Errorf("--fs-version %q: want 6 (RAFS v6, the default) or 5 (RAFS v5)", s)
}

// printJSON writes v to stdout as indented JSON, for --json outputs.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
