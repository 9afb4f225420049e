package converter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/registry"
)

// CopyOptions configure Copy.
type CopyOptions struct {
	Source, Target string // imageref syntax
	// Platform selects the manifest of an index; nil means the host's.
	Platform       *v1.Platform
	SourceRegistry registry.Options
	TargetRegistry registry.Options
	// SourceBackend, when set, holds the blobs of a source converted in
	// storage-backend mode: they are streamed from it into the target, which
	// becomes a self-contained image (docs/storage-backends.md).
	SourceBackend backend.Backend
	// WorkDir receives the bootstrap while copying; default the OS temp dir.
	WorkDir string
}

// CopyReport is what Copy did.
type CopyReport struct {
	Source string   `json:"source"`
	Target string   `json:"target"`
	Digest v1.Hash  `json:"target_digest"`
	Blobs  []string `json:"blobs_attached,omitempty"` // blob ids taken from the source backend
}

// Copy copies one platform's Nydus image from Source to Target. With a
// SourceBackend, the bootstrap's blob table says which blobs to fetch from
// it; each is streamed into the target as a blob layer placed before the
// bootstrap layer, as upstream's copy does.
func Copy(ctx context.Context, opts CopyOptions) (*CopyReport, error) {
	if opts.Source == "" || opts.Target == "" {
		return nil, errors.New("copy needs a source and a target")
	}
	dst, err := imageref.Parse(opts.Target)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	src, err := imageref.OpenImage(ctx, opts.Source, opts.SourceRegistry, opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if err := imageref.CheckTarget(ctx, dst, opts.TargetRegistry); err != nil {
		return nil, err
	}
	rep := &CopyReport{Source: opts.Source, Target: dst.String()}
	img := src.Image
	if opts.SourceBackend != nil {
		ids, err := blobTable(img, opts.WorkDir)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		blobs := make([]v1.Layer, len(ids))
		for i, id := range ids {
			size, err := opts.SourceBackend.Size(ctx, id)
			if err != nil {
				return nil, fmt.Errorf("source backend: %w", err)
			}
			if blobs[i], err = partial.CompressedToLayer(&backendLayer{ctx: ctx, be: opts.SourceBackend, id: id, size: size}); err != nil {
				return nil, err
			}
		}
		if img, err = packer.AttachBlobs(img, blobs); err != nil {
			return nil, err
		}
		rep.Blobs = ids
	} else if err := blobsInManifest(img, opts.WorkDir); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	desc, err := imageref.Publish(ctx, dst, img, opts.TargetRegistry)
	if err != nil {
		return nil, err
	}
	rep.Digest = desc.Digest
	return rep, nil
}

// blobTable returns the blob ids of the image's bootstrap, in table order.
func blobTable(img v1.Image, workDir string) ([]string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, errors.New("the image has no layers")
	}
	dir, err := os.MkdirTemp(orTemp(workDir), "nydusify-copy-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "image.boot")
	if _, err := packer.ExtractBootstrap(layers[len(layers)-1], path); err != nil {
		return nil, fmt.Errorf("extracting the bootstrap: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	rd, err := rafs.Open(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("reading the bootstrap: %w", err)
	}
	ids := make([]string, len(rd.Blobs))
	for i, e := range rd.Blobs {
		ids[i] = e.BlobID
	}
	return ids, nil
}

// backendLayer is a blob of a storage backend as a layer: its digest is
// sha256:<blob id>, its bytes are read by range when the layer is written
// (the registry, or the layout writer, checks them against the digest).
type backendLayer struct {
	ctx  context.Context
	be   backend.Backend
	id   string
	size int64
}

func (l *backendLayer) Digest() (v1.Hash, error) { return v1.Hash{Algorithm: "sha256", Hex: l.id}, nil }
func (l *backendLayer) Size() (int64, error)     { return l.size, nil }
func (l *backendLayer) MediaType() (types.MediaType, error) {
	return packer.MediaTypeNydusBlob, nil
}

func (l *backendLayer) Compressed() (io.ReadCloser, error) {
	r := io.NewSectionReader(backend.ReaderAt(l.ctx, l.be, l.id), 0, l.size)
	// Reads of 4 MiB: from S3 each read is one ranged GET.
	return io.NopCloser(bufio.NewReaderSize(r, 4<<20)), nil
}

// blobsInManifest refuses to copy a Nydus image whose bootstrap names blobs
// that are not its layers: they live in a storage backend, and a copy without
// them would not be self-contained.
func blobsInManifest(img v1.Image, workDir string) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	if len(m.Layers) == 0 || m.Layers[len(m.Layers)-1].Annotations[packer.AnnotationNydusBootstrap] != "true" {
		return nil // not a Nydus image: copied as it is
	}
	ids, err := blobTable(img, workDir)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, l := range m.Layers {
		have[l.Digest.Hex] = true
	}
	for _, id := range ids {
		if !have[id] {
			return fmt.Errorf("blob %s of the bootstrap is not a layer of the image: its blobs are in a storage backend; give --source-backend-type and --source-backend-config to copy them into the target", id)
		}
	}
	return nil
}
