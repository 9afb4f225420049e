package imageref

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"

	"github.com/nydus-go/nydusify/layout"
	"github.com/nydus-go/nydusify/registry"
)

// artifact is what a place stores under a name: a v1.Image or a v1.ImageIndex.
type artifact interface {
	partial.Describable
	RawManifest() ([]byte, error)
}

// Publish writes a (a v1.Image or a v1.ImageIndex) to target, through the package of the
// place it names, and returns the descriptor of what target now names. Every blob is
// written before the manifests that name it, and each manifest before the index, so a
// reader never sees a manifest whose blobs are missing.
//
//   - Registry ([registry.Push]): pushed under opts; the tag, or digest, of target.Name is
//     set last.
//   - OCILayout ([layout.Write]): written into the directory target.Path under the tag
//     target.Name ([layout.DefaultTag] if empty).
//   - Archives: not supported as targets yet.
func Publish(ctx context.Context, target Ref, a artifact, opts registry.Options) (v1.Descriptor, error) {
	var (
		desc v1.Descriptor
		err  error
	)
	switch {
	case a == nil:
		err = errors.New("nothing to publish")
	case target.Kind == Registry:
		desc, err = registry.Push(ctx, target.Name, a, opts)
	case target.Kind == OCILayout:
		desc, err = layout.Write(ctx, target.Path, target.Name, a)
	default:
		err = fmt.Errorf("%s is not supported as a target yet", target.Kind)
	}
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("publishing to %s: %w", target, err)
	}
	return desc, nil
}
