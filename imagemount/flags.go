package imagemount

import (
	"errors"
	"fmt"
	"os"
)

// Flag is a command-line value and whether the user gave it. Value holds
// the flag's default when Set is false; only a set flag overrides a
// configuration file.
type Flag[T any] struct {
	Value T
	Set   bool
}

// Flags are the mount settings of `nydusify mount`, as given on its command
// line. Errors and notes from FlagConfig name the flags.
type Flags struct {
	// ConfigFile is a nydusd JSON configuration file (--config); "" for
	// none.
	ConfigFile string
	// BackendType is --backend-type (default "localfs"), the type of the
	// backend --backend-config describes.
	BackendType Flag[string]
	// BackendConfig is --backend-config: nydusd's backend "config" object
	// as JSON.
	BackendConfig Flag[string]
	// BackendConfigFile is --backend-config-file: a file holding what
	// --backend-config would; "" for none.
	BackendConfigFile string
	// CacheDir is --cache-dir.
	CacheDir Flag[string]
	// Prefetch is --prefetch.
	Prefetch Flag[bool]
	// PrefetchWorkers is --prefetch-workers; at least 1 when set.
	PrefetchWorkers Flag[int]
	// HideXattrs is --hide-xattrs.
	HideXattrs Flag[bool]
	// VerifyMetadata is --verify-metadata.
	VerifyMetadata Flag[bool]
}

// FlagConfig returns the Config a mount runs with, from, in increasing
// precedence: DefaultConfig, the configuration file (whose absent keys take
// nydusd's defaults, see ParseConfig), the backend flags (which replace the
// file's whole backend) and every other flag that was set. bootstrap says
// whether a bootstrap file is mounted rather than an image reference: it
// then needs a backend from the file or the flags, while an image's blobs
// are by default read from where the image lives. The notes are what
// ParseConfig and ParseBackendConfig returned, each prefixed with the file
// or flag it came from, for the log.
func FlagConfig(f Flags, bootstrap bool) (Config, []string, error) {
	cfg := DefaultConfig()
	var notes []string
	if f.ConfigFile != "" {
		data, err := os.ReadFile(f.ConfigFile)
		if err != nil {
			return Config{}, nil, err
		}
		c, n, err := ParseConfig(data)
		if err != nil {
			return Config{}, nil, fmt.Errorf("%s: %w", f.ConfigFile, err)
		}
		for _, s := range n {
			notes = append(notes, f.ConfigFile+": "+s)
		}
		cfg = c
	}
	backendConfig := f.BackendConfig.Value
	if f.BackendConfigFile != "" {
		if f.BackendConfig.Set {
			return Config{}, nil, errors.New("give --backend-config or --backend-config-file, not both")
		}
		data, err := os.ReadFile(f.BackendConfigFile)
		if err != nil {
			return Config{}, nil, err
		}
		backendConfig = string(data)
	}
	switch {
	case backendConfig != "":
		be, n, err := ParseBackendConfig(f.BackendType.Value, []byte(backendConfig))
		if err != nil {
			return Config{}, nil, fmt.Errorf("--backend-config: %w", err)
		}
		for _, s := range n {
			notes = append(notes, "--backend-config: "+s)
		}
		cfg.Backend = be
	case f.BackendType.Set:
		return Config{}, nil, errors.New("--backend-type needs --backend-config")
	case bootstrap && f.ConfigFile == "":
		return Config{}, nil, errors.New("--bootstrap needs a backend: --backend-type and --backend-config, or --config")
	}
	if f.CacheDir.Set {
		cfg.CacheDir = f.CacheDir.Value
	}
	if f.Prefetch.Set {
		cfg.Prefetch.Enable = f.Prefetch.Value
	}
	if f.PrefetchWorkers.Set {
		if f.PrefetchWorkers.Value < 1 {
			return Config{}, nil, errors.New("--prefetch-workers must be at least 1")
		}
		cfg.Prefetch.Workers = f.PrefetchWorkers.Value
	}
	if f.HideXattrs.Set {
		cfg.Xattrs = !f.HideXattrs.Value
	}
	if f.VerifyMetadata.Set {
		cfg.VerifyMetadata = f.VerifyMetadata.Value
	}
	return cfg, notes, nil
}
