package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/rafs"
)

func newConvertCmd() *cobra.Command {
	var (
		opts                             converter.Options
		compressor, chunkSize, platforms string
		fsVersion, outputJSON            string
		plainHTTP, oci, dockerV2         bool
		retries                          int
		be                               backendFlags
	)
	var prefetchPatterns func(io.Reader) ([]string, error) // set with the flags below
	cmd := &cobra.Command{
		Use:   "convert --source REF (--target REF | --target-suffix SUFFIX)",
		Short: "Convert an OCI/Docker image into a Nydus image",
		Long: `Convert an OCI or Docker image into a Nydus image (RAFS v6, or v5 with --fs-version 5).

Sources: a registry reference, oci:DIR[:TAG] (OCI layout), oci-archive:FILE[:TAG],
docker-archive:FILE[:REF] (docker save). Targets: a registry reference or
oci:DIR[:TAG]. Credentials come from the docker config ($DOCKER_CONFIG).

Every layer streams into its own Nydus blob carrying its own bootstrap, with
chunks repeated within the layer stored once. A blob depends only on its
layer and the options, so the same layer (a shared base) converts to the same
blob in every image, and layers convert in parallel (--concurrency).
--cross-layer-dedup also leaves out of each blob the chunks lower layers
store: a smaller image, but blobs tied to the layers below them (no longer
shared between images on different bases) and converted one by one.
--build-cache REF (or --build-cache-tag TAG) keeps a cache image of converted
layers keyed by source layer digest and the options that shape a blob: a hit
is neither fetched nor converted, its blob is mounted into the target
repository (copied from elsewhere), and the log and --output-json count hits
and misses. The cache is pushed before the target. The image has OCI media types even
for a Docker source, as with upstream's --oci (a Docker v2 manifest holding
Nydus blob layers is refused by skopeo). The layers' bootstraps are merged
with overlay whiteout rules into the image bootstrap, shipped as the last
layer. The manifest is published only after every blob and only when every
platform converted. Before any layer is read, the target is checked to take a
push (reachable, TLS or plain HTTP as allowed, credentials, an upload accepted).

With --backend-type s3|localfs and --backend-config, the data blobs go to
that storage backend (object key object_prefix + blob id) and the published
image holds only the bootstrap layer, as upstream lays it out; blobs the
backend already has are not sent again unless --backend-force-push. The
bucket is checked before any layer is read, and blobs are pushed before
anything is published. Credentials never appear in logs or the report.

Registries are reached over HTTPS. Plain HTTP is allowed to loopback
registries (localhost, *.localhost, 127.0.0.0/8, ::1) by convention, as
go-containerregistry and containerd allow it, and to any other registry
only with --plain-http.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if !oci {
				return errors.New("--oci=false is not supported: every image nydusify publishes has OCI media types, " +
					"since a docker v2 manifest holding Nydus blob layers (an OCI media type) is refused by skopeo and containers/image")
			}
			if opts.Build.FsVersion, err = parseFsVersion(fsVersion); err != nil {
				return err
			}
			if opts.BuildCache.MaxRecords < 1 {
				return fmt.Errorf("--build-cache-max-records %d: give 1 to %d", opts.BuildCache.MaxRecords, converter.DefaultCacheRecords)
			}
			if opts.Build.Compressor, err = rafs.ParseCompressor(compressor); err != nil {
				return err
			}
			if opts.Build.ChunkSize, err = rafs.ParseChunkSize(chunkSize); err != nil {
				return fmt.Errorf("--fs-chunk-size: %w", err)
			}
			if opts.Build.PrefetchPatterns, err = prefetchPatterns(cmd.InOrStdin()); err != nil {
				return err
			}
			if platforms != "" {
				if opts.Platforms, err = imageref.ParsePlatforms(platforms); err != nil {
					return err
				}
			}
			opts.SourceRegistry.PlainHTTP, opts.TargetRegistry.PlainHTTP = plainHTTP, plainHTTP
			opts.SourceRegistry.Retries, opts.TargetRegistry.Retries = retries, retries
			opts.SourceRegistry.Jobs, opts.TargetRegistry.Jobs = opts.Concurrency, opts.Concurrency
			if be.set() {
				if opts.Backend, err = be.pusher(); err != nil {
					return err
				}
			} else if opts.BackendForcePush {
				return errors.New("--backend-force-push needs --backend-type and --backend-config")
			}
			noteLoopback(plainHTTP, opts.Source, opts.Target)
			view := newProgressView()
			opts.Build.Logger = logrus.StandardLogger()
			opts.Build.Progress, opts.Build.ProgressInterval = view.bytes, view.interval()
			opts.Progress = view.event
			rep, err := converter.Convert(cmd.Context(), opts)
			view.done()
			if err != nil {
				return err
			}
			writeConvertSummary(cmd.OutOrStdout(), rep)
			if outputJSON != "" {
				data, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				if err := atomicfile.WriteFile(outputJSON, append(data, '\n'), 0o644); err != nil {
					return fmt.Errorf("writing --output-json: %w", err)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	prefetchPatterns = prefetchFlags(f, `the table holds "/" (everything), as upstream's converters write it`)
	f.StringVar(&opts.Source, "source", "", "source image reference (required)")
	f.StringVar(&opts.Target, "target", "", "target image reference")
	f.StringVar(&opts.TargetSuffix, "target-suffix", "", "target = source registry reference with this suffix appended to its tag")
	f.StringVar(&compressor, "compressor", "zstd", "chunk compression: none, lz4_block or zstd")
	f.StringVar(&chunkSize, "fs-chunk-size", "0x100000", "chunk size, a power of two from 0x1000 to 0x1000000")
	f.StringVar(&fsVersion, "fs-version", "6", "RAFS version of the image bootstrap: 6, or 5 (nydusd only; Merkle-hashed inodes)")
	f.StringVar(&platforms, "platform", "", "platforms to convert, e.g. linux/amd64,linux/arm64: picks from an index; a single-platform image must be one of them (default: the host's linux/<arch> from an index, a single image as it is)")
	f.BoolVar(&opts.AllPlatforms, "all-platforms", false, "convert every platform of an index (attestation manifests are skipped)")
	f.BoolVar(&opts.SourceRegistry.Insecure, "source-insecure", false, "skip TLS certificate verification for the source registry")
	f.BoolVar(&opts.TargetRegistry.Insecure, "target-insecure", false, "skip TLS certificate verification for the target registry")
	f.BoolVar(&plainHTTP, "plain-http", false, "allow plain HTTP (no TLS) to source and target registries; loopback registries (localhost, 127.0.0.0/8, ::1) are allowed it without this flag")
	f.StringVar(&outputJSON, "output-json", "", "write the conversion report (sizes, chunk and dedup counts, timings) to this file")
	f.IntVar(&retries, "push-retry-count", 3, "retries of failed registry requests")
	f.StringVar(&opts.WorkDir, "work-dir", "", "directory for spilled layers and blobs; created if missing, and removed again if convert created it (default: the system temp dir)")
	f.IntVar(&opts.Concurrency, "concurrency", 4, "parallel layer downloads, layer conversions and blob uploads")
	f.BoolVar(&opts.CrossLayerDedup, "cross-layer-dedup", false, "leave out of each layer's blob the chunks lower layers store: smaller, but each blob then depends on the layers below it and layers convert one by one")
	f.StringVar(&opts.BuildCache.Ref, "build-cache", "", "registry reference of a build cache image: layers converted before with the same options are reused (see docs/build-cache.md)")
	f.StringVar(&opts.BuildCache.Tag, "build-cache-tag", "", "build cache in the target repository at this tag (instead of --build-cache)")
	f.StringVar(&opts.BuildCache.Version, "build-cache-version", "v1", "build cache version: cache manifests of another version are ignored and replaced")
	f.IntVar(&opts.BuildCache.MaxRecords, "build-cache-max-records", converter.DefaultCacheRecords, "layers the build cache keeps per platform, most recently used first (1 to 200)")
	f.IntVar(&opts.Build.Workers, "workers", 0, "goroutines hashing and compressing chunks (0: one per CPU)")
	f.BoolVar(&oci, "oci", true, "OCI media types for manifest, config, bootstrap layer and index, whatever the source's (always on: a docker v2 manifest cannot carry Nydus blob layers readably)")
	be.register(f, "", "push data blobs to this storage backend; the image then holds only the bootstrap layer")
	f.BoolVar(&opts.BackendForcePush, "backend-force-push", false, "push blobs the backend already has")
	f.BoolVar(&dockerV2, "docker-v2-format", false, "deprecated, has no effect")
	f.MarkDeprecated("docker-v2-format", "it has no effect, as in upstream nydusify; the image always has OCI media types (see --oci)")
	return cmd
}
