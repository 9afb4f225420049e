package packer

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nydus-go/nydusify/internal/atomicfile"
)

// ExtractBootstrap reads the bootstrap layer l (the last layer of a Nydus
// image), writes its [BootstrapName] entry to path through a temporary file
// in the same directory, and returns the sha256 of the layer's uncompressed
// tar, which a consumer compares with the config's diff_id.
// The whole layer is read, so its compressed digest is verified too.
func ExtractBootstrap(l v1.Layer, path string) (diffID v1.Hash, err error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return v1.Hash{}, err
	}
	defer rc.Close()
	h := sha256.New()
	err = atomicfile.Write(path, 0o600, func(w io.Writer) error {
		hashed := io.TeeReader(rc, h)
		tr := tar.NewReader(hashed)
		found := false
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("reading the bootstrap layer: %w", err)
			}
			if hdr.Name != BootstrapName || found {
				continue
			}
			if _, err := io.Copy(w, tr); err != nil {
				return fmt.Errorf("reading %s: %w", BootstrapName, err)
			}
			found = true
		}
		// What follows the end-of-archive blocks (GNU tar and Python pad
		// to 10240-byte records) is part of the diff_id too.
		if _, err := io.Copy(io.Discard, hashed); err != nil {
			return fmt.Errorf("reading the bootstrap layer: %w", err)
		}
		if !found {
			return errors.New("no " + BootstrapName + " in the bootstrap layer")
		}
		return nil
	})
	if err != nil {
		return v1.Hash{}, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
}
