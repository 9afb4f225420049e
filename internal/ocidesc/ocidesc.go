// Package ocidesc builds the descriptor an image place records for a
// manifest or index it writes.
package ocidesc

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
)

// Of returns the media type, size and digest of a manifest or index. Unlike
// partial.Descriptor it sets no artifactType, which containerd does not write
// either and docker manifest lists do not define.
func Of(a partial.Describable) (v1.Descriptor, error) {
	var (
		d   v1.Descriptor
		err error
	)
	if d.MediaType, err = a.MediaType(); err != nil {
		return d, err
	}
	if d.Size, err = a.Size(); err != nil {
		return d, err
	}
	d.Digest, err = a.Digest()
	return d, err
}
