package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/blobcache"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsfs"
)

// mountBackendConfig holds the keys of nydusd's backend "config" object that
// mount understands: localfs {"dir"}, registry {"scheme", "host", "repo"}.
type mountBackendConfig struct {
	Dir    string `json:"dir"`
	Scheme string `json:"scheme"`
	Host   string `json:"host"`
	Repo   string `json:"repo"`
}

func newMountCmd() *cobra.Command {
	var bootstrap, backendType, backendConfig, mountPath, cacheDir string
	var allowOther bool
	cmd := &cobra.Command{
		Use:   "mount --bootstrap FILE --backend-type localfs --backend-config '{\"dir\":\"DIR\"}' --mount-path DIR",
		Short: "Mount a RAFS v6 image read-only with FUSE, fetching file data lazily",
		Long: `Mount a RAFS v6 image read-only with FUSE (needs root: mount(2) is called
directly). File data is fetched from the backend chunk by chunk on first
read, checked against the bootstrap's digests and kept in --cache-dir
(<blob id>.blob.data, .chunk_map, .chunk_info), so a later mount with the
same cache directory reuses what was fetched. A chunk that fails its digest
check reads as EIO and is logged.

Backends: localfs {"dir": DIR} with blobs named by id; registry
{"scheme": "https"|"http", "host": HOST, "repo": REPO}, credentials from the
docker config. The command stays in the foreground until SIGINT or SIGTERM,
then unmounts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			if bootstrap == "" || mountPath == "" {
				return errors.New("--bootstrap and --mount-path are required")
			}
			be, err := newMountBackend(backendType, backendConfig)
			if err != nil {
				return err
			}
			f, err := os.Open(bootstrap)
			if err != nil {
				return fmt.Errorf("opening bootstrap: %w", err)
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			rd, err := rafs.Open(f, st.Size())
			if err != nil {
				return fmt.Errorf("bootstrap %s: %w", bootstrap, err)
			}
			if cacheDir == "" {
				if cacheDir, err = os.MkdirTemp("", "nydusify-cache-"); err != nil {
					return err
				}
				defer os.RemoveAll(cacheDir)
			}
			// Causes of EIO and failed fetches go to the log as warnings.
			logw := logrus.StandardLogger().WriterLevel(logrus.WarnLevel)
			defer logw.Close()
			stdLogger := log.New(logw, "", 0)
			var caches []*blobcache.Cache
			defer func() {
				for _, c := range caches {
					c.Close()
				}
			}()
			for i, e := range rd.Blobs {
				digests, err := rd.ChunkDigests(i)
				if err != nil {
					return err
				}
				c, err := blobcache.Open(ctx, cacheDir, be, e, digests, blobcache.Options{Logger: stdLogger})
				if err != nil {
					return fmt.Errorf("opening cache of blob %s: %w", e.BlobID, err)
				}
				caches = append(caches, c)
			}
			srv, err := rafsfs.Mount(mountPath, rd, caches, rafsfs.Options{Logger: stdLogger, AllowOther: allowOther})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mounted at %s\n", mountPath)
			served := make(chan struct{})
			go func() {
				srv.Wait()
				close(served)
			}()
			select {
			case <-ctx.Done():
				if err := srv.Unmount(); err != nil {
					return fmt.Errorf("unmounting %s: %w", mountPath, err)
				}
				<-served
				logrus.Infof("unmounted %s", mountPath)
				return nil
			case <-served:
				return fmt.Errorf("%s was unmounted externally", mountPath)
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&bootstrap, "bootstrap", "", "RAFS v6 bootstrap file (required)")
	fl.StringVar(&backendType, "backend-type", "localfs", "localfs or registry")
	fl.StringVar(&backendConfig, "backend-config", "", `backend configuration as JSON, nydusd's "config" object`)
	fl.StringVar(&mountPath, "mount-path", "", "directory to mount on (required)")
	fl.StringVar(&cacheDir, "cache-dir", "", "chunk cache directory, kept across mounts (default: a temporary directory removed at exit)")
	fl.BoolVar(&allowOther, "allow-other", false, "let other users access the mount, with kernel permission checks")
	return cmd
}

func newMountBackend(typ, config string) (backend.Backend, error) {
	var c mountBackendConfig
	if config == "" {
		return nil, errors.New("--backend-config is required")
	}
	dec := json.NewDecoder(strings.NewReader(config))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parsing --backend-config: %w", err)
	}
	switch typ {
	case "localfs":
		if c.Dir == "" {
			return nil, errors.New(`localfs backend needs {"dir": DIR}`)
		}
		return backend.NewLocalFS(c.Dir), nil
	case "registry":
		if c.Host == "" || c.Repo == "" {
			return nil, errors.New(`registry backend needs {"host": HOST, "repo": REPO}`)
		}
		var opts []name.Option
		switch c.Scheme {
		case "http":
			opts = append(opts, name.Insecure)
		case "", "https":
		default:
			return nil, fmt.Errorf("registry scheme %q: want https or http", c.Scheme)
		}
		repo, err := name.NewRepository(c.Host+"/"+c.Repo, opts...)
		if err != nil {
			return nil, err
		}
		return backend.NewRegistry(repo, backend.WithKeychain(authn.DefaultKeychain))
	}
	return nil, fmt.Errorf("backend type %q: want localfs or registry", typ)
}
