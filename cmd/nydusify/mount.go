package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/internal/sdnotify"
)

func newMountCmd() *cobra.Command {
	var (
		opts                                                    imagemount.Options
		configPath, backendType, backendConfig                  string
		backendConfigFile, cacheDir, platform                   string
		prefetch, asJSON, plainHTTP, hideXattrs, verifyMetadata bool
		prefetchWorkers                                         int
	)
	cmd := &cobra.Command{
		Use:   "mount (--target REF | --bootstrap FILE) --mount-path DIR",
		Short: "Mount a Nydus image read-only with FUSE, fetching file data lazily",
		Long: `Mount a Nydus (RAFS v6 or v5) image read-only with FUSE (needs root: mount(2) is
called directly). File data is fetched from the backend chunk by chunk on
first read, each chunk together with the ones after it up to 1 MiB, checked
against the bootstrap's digests and kept in --cache-dir (<blob id>.blob.data,
.chunk_map, .chunk_info), so a later mount with the same cache directory
reuses what was fetched. A chunk that fails its digest check, or a backend
error or timeout, reads as EIO and is logged.

The image is --target, a registry reference or oci:DIR[:TAG] whose bootstrap
layer is pulled and whose blobs are read from the same repository (or the
layout's blobs directory); or --bootstrap, a bootstrap file, with a backend.

Backends (--backend-type, --backend-config as nydusd's "config" object):
  localfs   {"dir": DIR}  blobs named by id
  registry  {"scheme": "https"|"http", "host": HOST, "repo": REPO,
             "auth": base64(user:password), "registry_token": TOKEN,
             "skip_verify": BOOL, "timeout": SECONDS}
            credentials default to the docker config's
  s3        {"endpoint": HOST[:PORT], "scheme": "https"|"http", "region": R,
             "bucket_name": B, "access_key_id": ID, "access_key_secret": KEY,
             "object_prefix": P, "timeout": SECONDS, "retry_limit": N}
            without keys, the AWS environment and credential chain
            (docs/storage-backends.md)

--config reads a nydusd JSON configuration (device.backend, device.cache
work_dir, enable_xattr, amplify_io, fs_prefetch); flags given as well
override it. Keys nydusd does not know are errors; keys it knows that this
mount ignores are logged.

Extended attributes:
  without --config  shown, unless --hide-xattrs is given
  with --config     shown only when the file sets "enable_xattr": true, as
                    with nydusd; a --hide-xattrs given as well overrides the
                    file: --hide-xattrs hides them, --hide-xattrs=false shows
                    them

Plain HTTP to the --target registry: allowed to a loopback registry
(localhost, 127.0.0.0/8, ::1) by convention, as go-containerregistry and
containerd allow it; any other registry needs --plain-http.

--prefetch fetches the files of the bootstrap's prefetch table, or every
chunk when it has none, in the background.

When the mount is usable, "mounted at DIR" is printed (with --json, a
{"event":"ready",...} line) and READY=1 is sent to $NOTIFY_SOCKET for
systemd Type=notify units. The command stays in the foreground until
SIGINT or SIGTERM, then unmounts.`,
		Example: `  nydusify mount --target registry.lan:5000/app:1.0-nydus --plain-http --mount-path ./mnt --prefetch
  nydusify mount --bootstrap out/app.meta --backend-type localfs --backend-config '{"dir":"out"}' --mount-path ./mnt
  nydusify mount --config nydusd.json --bootstrap app.meta --mount-path ./mnt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			fl := cmd.Flags()
			if opts.MountPath == "" {
				return errors.New("--mount-path is required")
			}
			if (opts.Bootstrap == "") == (opts.Target == "") {
				return errors.New("give one of --target and --bootstrap")
			}
			for _, f := range []string{"platform", "plain-http", "target-insecure"} {
				if opts.Bootstrap != "" && fl.Changed(f) {
					return fmt.Errorf("--%s applies to --target only: with --bootstrap the backend (--backend-type and --backend-config, or --config) says where the blobs are", f)
				}
			}
			var notes []string
			var err error
			opts.Config, notes, err = imagemount.FlagConfig(imagemount.Flags{
				ConfigFile:        configPath,
				BackendType:       imagemount.Flag[string]{Value: backendType, Set: fl.Changed("backend-type")},
				BackendConfig:     imagemount.Flag[string]{Value: backendConfig, Set: fl.Changed("backend-config")},
				BackendConfigFile: backendConfigFile,
				CacheDir:          imagemount.Flag[string]{Value: cacheDir, Set: fl.Changed("cache-dir")},
				Prefetch:          imagemount.Flag[bool]{Value: prefetch, Set: fl.Changed("prefetch")},
				PrefetchWorkers:   imagemount.Flag[int]{Value: prefetchWorkers, Set: fl.Changed("prefetch-workers")},
				HideXattrs:        imagemount.Flag[bool]{Value: hideXattrs, Set: fl.Changed("hide-xattrs")},
				VerifyMetadata:    imagemount.Flag[bool]{Value: verifyMetadata, Set: fl.Changed("verify-metadata")},
			}, opts.Bootstrap != "")
			if err != nil {
				return err
			}
			for _, n := range notes {
				logrus.Warn(n)
			}
			if opts.Platform, err = imageref.ParsePlatform(platform); err != nil {
				return err
			}
			opts.Registry.PlainHTTP = plainHTTP
			if opts.Target != "" {
				noteLoopback(plainHTTP, opts.Target)
			}
			// Causes of EIO and failed fetches go to the log as warnings.
			opts.Logger = logrus.StandardLogger()

			m, err := imagemount.Start(ctx, opts)
			if err != nil {
				return err
			}
			defer m.Close()
			out := cmd.OutOrStdout()
			info := m.Info()
			if asJSON {
				writeEvent(out, "ready", info)
			} else {
				fmt.Fprintf(out, "mounted at %s\n", info.MountPath)
			}
			logrus.Infof("%s: %d inodes, %d blob(s) from %s, cache %s, ready in %.3fs",
				info.Bootstrap, info.Inodes, info.Blobs, info.Backend, info.CacheDir, info.Seconds)
			if _, err := sdnotify.Notify(sdnotify.Ready + "\nSTATUS=mounted at " + info.MountPath); err != nil {
				logrus.Warn(err)
			}
			prefetched := m.Prefetched()
			for {
				select {
				case res := <-prefetched:
					prefetched = nil
					if res.Err != nil {
						logrus.Warnf("prefetch: %v", res.Err)
					}
					logrus.Infof("prefetch: %d chunk(s) in %.1fs", res.Chunks, res.Seconds)
					if asJSON {
						ev := struct {
							imagemount.PrefetchResult
							Error string `json:"error,omitempty"`
						}{PrefetchResult: res}
						if res.Err != nil {
							ev.Error = res.Err.Error()
						}
						writeEvent(out, "prefetched", ev)
					}
				case <-ctx.Done():
					sdnotify.Notify(sdnotify.Stopping)
					if err := m.Close(); err != nil {
						return err
					}
					logrus.Infof("unmounted %s", info.MountPath)
					if asJSON {
						writeEvent(out, "unmounted", struct{}{})
					}
					return nil
				case <-m.Done():
					return fmt.Errorf("%s was unmounted externally", info.MountPath)
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Target, "target", "", "Nydus image to mount: a registry reference or oci:DIR[:TAG]")
	fl.StringVar(&opts.Bootstrap, "bootstrap", "", "RAFS v6 or v5 bootstrap file to mount (with a backend)")
	fl.StringVar(&opts.MountPath, "mount-path", "", "directory to mount on (required)")
	fl.StringVar(&configPath, "config", "", "nydusd JSON configuration file")
	fl.StringVar(&backendType, "backend-type", "localfs", "localfs, registry or s3 (see Backends above)")
	fl.StringVar(&backendConfig, "backend-config", "", `backend configuration as JSON, nydusd's "config" object`)
	fl.StringVar(&backendConfigFile, "backend-config-file", "", "file holding the --backend-config JSON")
	fl.StringVar(&cacheDir, "cache-dir", "", "chunk cache directory, kept across mounts (default: a temporary directory removed at exit)")
	fl.BoolVar(&prefetch, "prefetch", false, "prefetch the prefetch table's files, or every chunk, in the background")
	fl.IntVar(&prefetchWorkers, "prefetch-workers", 8, "backend requests in flight while prefetching")
	fl.BoolVar(&verifyMetadata, "verify-metadata", false, `RAFS v5: check each inode's digest (the Merkle chain from the root) when first reached; a mismatch reads as EIO and is logged with the path (nydusd's "digest_validate": true)`)
	fl.BoolVar(&hideXattrs, "hide-xattrs", false, `serve no extended attributes; =false shows them even when --config lacks "enable_xattr": true (default: shown without --config; with it, as its enable_xattr says)`)
	fl.StringVar(&platform, "platform", "", "platform to mount: picks from an index; a single-platform image must be it (default: the host's linux/<arch> from an index, a single image as it is)")
	fl.BoolVar(&plainHTTP, "plain-http", false, "allow plain HTTP (no TLS) to the --target registry; a loopback registry (localhost, 127.0.0.0/8, ::1) is allowed it without this flag")
	fl.BoolVar(&opts.Registry.Insecure, "target-insecure", false, "skip TLS certificate verification for the --target registry")
	fl.BoolVar(&opts.AllowOther, "allow-other", false, "let other users access the mount, with kernel permission checks")
	fl.BoolVar(&asJSON, "json", false, `print events as JSON lines: "ready", "prefetched", "unmounted"`)
	return cmd
}

// writeEvent prints one JSON line: {"event": name, ...fields of v}.
func writeEvent(w io.Writer, name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		logrus.Warnf("encoding %s event: %v", name, err)
		return
	}
	fields := map[string]json.RawMessage{}
	json.Unmarshal(data, &fields)
	fields["event"], _ = json.Marshal(name)
	line, _ := json.Marshal(fields)
	fmt.Fprintf(w, "%s\n", line)
}
