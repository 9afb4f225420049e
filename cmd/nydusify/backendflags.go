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

// backendFlags are --backend-type, --backend-config and
// --backend-config-file: a storage backend that takes blobs (s3, localfs),
// configured with nydusd's backend "config" object (docs/storage-backends.md).
type backendFlags struct {
	typ, config, configFile string
}

func (b *backendFlags) register(f *pflag.FlagSet, what string) {
	f.StringVar(&b.typ, "backend-type", "", what+": s3 or localfs (docs/storage-backends.md)")
	f.StringVar(&b.config, "backend-config", "", `the backend's JSON config, as nydusd's backend "config": s3 {"endpoint","scheme","region","bucket_name","access_key_id","access_key_secret","object_prefix","meta_prefix"}, localfs {"dir"}`)
	f.StringVar(&b.configFile, "backend-config-file", "", "a file holding what --backend-config would")
}

func (b *backendFlags) set() bool { return b.typ != "" || b.config != "" || b.configFile != "" }

// pusher parses the flags into a backend that takes blobs. Nothing is sent.
func (b *backendFlags) pusher() (backend.Pusher, error) {
	data := b.config
	switch {
	case b.typ == "":
		return nil, errors.New("--backend-config needs --backend-type (s3 or localfs)")
	case b.config != "" && b.configFile != "":
		return nil, errors.New("give --backend-config or --backend-config-file, not both")
	case b.configFile != "":
		raw, err := os.ReadFile(b.configFile)
		if err != nil {
			return nil, fmt.Errorf("--backend-config-file: %w", err)
		}
		data = string(raw)
	case b.config == "":
		return nil, fmt.Errorf("--backend-type %s needs --backend-config or --backend-config-file", b.typ)
	}
	if b.typ != "s3" && b.typ != "localfs" {
		return nil, fmt.Errorf("--backend-type %q cannot take blobs: want s3 or localfs", b.typ)
	}
	cfg, notes, err := imagemount.ParseBackendConfig(b.typ, []byte(data))
	if err != nil {
		return nil, fmt.Errorf("--backend-config: %w", err)
	}
	for _, n := range notes {
		logrus.Warn("--backend-config: " + n)
	}
	be, err := imagemount.NewBackend(cfg)
	if err != nil {
		return nil, err
	}
	p, ok := be.(backend.Pusher)
	if !ok {
		return nil, fmt.Errorf("--backend-type %q cannot take blobs: want s3 or localfs", b.typ)
	}
	return p, nil
}
