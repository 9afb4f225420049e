package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/internal/ocidesc"
	"github.com/nydus-go/nydusify/internal/verify"
)

// DefaultTag is the org.opencontainers.image.ref.name [Write] gives an image when the tag
// is empty.
const DefaultTag = "latest"

// Write writes a (a v1.Image or a v1.ImageIndex) into the layout at dir under tag
// ([DefaultTag] if empty) and returns its descriptor (media type, size, digest). The
// directory (and its oci-layout file) is created if missing. Every blob is written before
// the manifests that name it, and each manifest before the index: blobs go to temporary
// files, are verified against their digests and renamed into place (one already present
// with the right size is kept); then index.json is rewritten the same way, replacing any
// entry named tag. A failure therefore leaves index.json as it was (perhaps with
// unreferenced blobs). Cancelling ctx stops it before the next blob.
//
// Concurrent writers into one layout, goroutines or processes, are safe and lose nothing:
// blobs are content-addressed and renamed into place whole, and index.json is read,
// changed and replaced under an exclusive lock on [LockFile], so each writer's entry
// survives the others' (the last writer of a tag wins).
func Write(ctx context.Context, dir, tag string, a Artifact) (v1.Descriptor, error) {
	if tag == "" {
		tag = DefaultTag
	}
	desc, err := ocidesc.Of(a)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := ctx.Err(); err != nil {
		return v1.Descriptor{}, err
	}
	if err := os.MkdirAll(BlobDir(dir), 0o755); err != nil {
		return v1.Descriptor{}, fmt.Errorf("creating layout: %w", err)
	}
	layoutFile := filepath.Join(dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.WriteFile(layoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`), 0o644); err != nil {
			return v1.Descriptor{}, fmt.Errorf("creating layout: %w", err)
		}
	} else if err != nil {
		return v1.Descriptor{}, fmt.Errorf("checking layout: %w", err)
	}
	switch a := a.(type) {
	case v1.Image:
		if err := writeImage(ctx, dir, a); err != nil {
			return v1.Descriptor{}, err
		}
	case v1.ImageIndex:
		im, err := a.IndexManifest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		for _, child := range im.Manifests {
			img, err := a.Image(child.Digest)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("reading manifest %s: %w", child.Digest, err)
			}
			if err := writeImage(ctx, dir, img); err != nil {
				return v1.Descriptor{}, err
			}
		}
		if err := writeRawBlob(ctx, dir, a); err != nil {
			return v1.Descriptor{}, fmt.Errorf("writing index: %w", err)
		}
	default:
		return v1.Descriptor{}, fmt.Errorf("%T is neither an image nor an index", a)
	}
	if err := updateIndexJSON(ctx, dir, tag, desc); err != nil {
		return v1.Descriptor{}, err
	}
	return desc, nil
}

// writeImage writes an image's layers, config and manifest, in that order.
func writeImage(ctx context.Context, dir string, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		if err := writeBlob(ctx, dir, h, size, l.Compressed); err != nil {
			return fmt.Errorf("writing layer %s: %w", h, err)
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("reading config digest: %w", err)
	}
	if err := writeBlob(ctx, dir, cfgName, int64(len(cfg)), bytesOpener(cfg)); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	if err := writeRawBlob(ctx, dir, img); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// writeRawBlob writes a manifest or index as a blob.
func writeRawBlob(ctx context.Context, dir string, a Artifact) error {
	raw, err := a.RawManifest()
	if err != nil {
		return err
	}
	h, err := a.Digest()
	if err != nil {
		return err
	}
	return writeBlob(ctx, dir, h, int64(len(raw)), bytesOpener(raw))
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// writeBlob stores a blob unless a file of its size is already in place: it copies into a
// temporary file beside the target, checks digest and size on the way, syncs and renames it.
// Writers of the same blob race harmlessly: each renames identical, verified content.
func writeBlob(ctx context.Context, dir string, h v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	final := filepath.Join(dir, filepath.FromSlash(blobPath(h)))
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		return nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	vr, err := verify.ReadCloser(rc, size, h)
	if err != nil {
		return err
	}
	defer vr.Close()
	return atomicfile.Write(final, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, vr)
		return err
	})
}

// updateIndexJSON replaces the index.json entry named tag by desc, or adds it, holding the
// layout's lock from reading index.json until its replacement is renamed into place.
func updateIndexJSON(ctx context.Context, dir, tag string, desc v1.Descriptor) (err error) {
	unlock, err := lock(ctx, dir)
	if err != nil {
		return err
	}
	defer func() {
		if uerr := unlock(); err == nil && uerr != nil {
			err = fmt.Errorf("unlocking index.json: %w", uerr)
		}
	}()
	path := filepath.Join(dir, "index.json")
	index := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if index, err = v1.ParseIndexManifest(bytes.NewReader(raw)); err != nil {
			return fmt.Errorf("parsing index.json: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("reading index.json: %w", err)
	}
	kept := index.Manifests[:0]
	for _, d := range index.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] != tag {
			kept = append(kept, d)
		}
	}
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	index.Manifests = append(kept, desc)
	out, err := marshal(index)
	if err != nil {
		return fmt.Errorf("encoding index.json: %w", err)
	}
	// atomicfile syncs the directory too, so an entry Write reported survives a crash.
	if err := atomicfile.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("writing index.json: %w", err)
	}
	return nil
}

// marshal encodes v as compact JSON without escaping <, > and &, as the manifests we write
// are encoded.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
