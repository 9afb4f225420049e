package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/imagemount"
)

// backendFlags are <prefix>backend-type, <prefix>backend-config and
// <prefix>backend-config-file: a storage backend configured with nydusd's
// backend "config" object (docs/storage-backends.md).
type backendFlags struct {
	prefix                  string // "" or e.g. "target-"
	typ, config, configFile string
}

func (b *backendFlags) register(f *pflag.FlagSet, prefix, what string) {
	b.prefix = prefix
	f.StringVar(&b.typ, prefix+"backend-type", "", what+": s3 or localfs (docs/storage-backends.md)")
	f.StringVar(&b.config, prefix+"backend-config", "", `the backend's JSON config, as nydusd's backend "config": s3 {"endpoint","scheme","region","bucket_name","access_key_id","access_key_secret","object_prefix","meta_prefix"}, localfs {"dir"}`)
	f.StringVar(&b.configFile, prefix+"backend-config-file", "", "a file holding what --"+prefix+"backend-config would")
}

func (b *backendFlags) set() bool { return b.typ != "" || b.config != "" || b.configFile != "" }

// open parses the flags into a backend. Nothing is sent.
func (b *backendFlags) open() (backend.Backend, error) {
	flag := "--" + b.prefix + "backend-"
	data := b.config
	switch {
	case b.typ == "":
		return nil, fmt.Errorf("%sconfig needs %stype (s3 or localfs)", flag, flag)
	case b.config != "" && b.configFile != "":
		return nil, fmt.Errorf("give %sconfig or %sconfig-file, not both", flag, flag)
	case b.configFile != "":
		raw, err := os.ReadFile(b.configFile)
		if err != nil {
			return nil, fmt.Errorf("%sconfig-file: %w", flag, err)
		}
		data = string(raw)
	case b.config == "":
		return nil, fmt.Errorf("%stype %s needs %sconfig or %sconfig-file", flag, b.typ, flag, flag)
	}
	cfg, notes, err := imagemount.ParseBackendConfig(b.typ, []byte(data))
	if err != nil {
		return nil, fmt.Errorf("%sconfig: %w", flag, err)
	}
	for _, n := range notes {
		logrus.Warn(flag + "config: " + n)
	}
	return imagemount.NewBackend(cfg)
}

// pusher is open for a backend that must take blobs (s3, localfs).
func (b *backendFlags) pusher() (backend.Pusher, error) {
	be, err := b.open()
	if err != nil {
		return nil, err
	}
	p, ok := be.(backend.Pusher)
	if !ok {
		return nil, errors.New("--" + b.prefix + "backend-type " + b.typ + " cannot take blobs: want s3 or localfs")
	}
	return p, nil
}
