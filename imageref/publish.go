package imageref

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

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

// CheckTarget checks, before anything is built for it, that [Publish] can write to target,
// so a conversion fails in seconds rather than after every layer was read:
//
//   - Registry ([registry.CheckPush]): the registry answers as opts allow (HTTPS, or plain
//     HTTP), the credentials may push, and the repository accepts the start of an upload.
//   - OCILayout: target.Path is a writable directory, or can be created as one (its nearest
//     existing parent is a writable directory).
//   - Archives: refused, as Publish refuses them.
//
// Nothing is written.
func CheckTarget(ctx context.Context, target Ref, opts registry.Options) error {
	var err error
	switch target.Kind {
	case Registry:
		err = registry.CheckPush(ctx, target.Name, opts)
	case OCILayout:
		err = checkWritableDir(target.Path)
	default:
		err = fmt.Errorf("%s is not supported as a target yet", target.Kind)
	}
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	return nil
}

// checkWritableDir checks that dir is a writable directory or that its nearest existing
// parent is one, so that it can be created.
func checkWritableDir(dir string) error {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) && filepath.Dir(p) != p {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("%s is not writable: %w", p, err)
		}
		return nil
	}
}
