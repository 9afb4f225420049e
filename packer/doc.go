// Package packer turns the output of a Nydus build into an image and publishes it. It
// consumes data blob files and a merged RAFS bootstrap on disk, wraps them as layers (blobs
// stored as they are, the bootstrap as a gzip tar under image/), rewrites the source image's
// config and manifest the way nydus-snapshotter does (docs/nydus-image-layout.md), and
// writes the result, blobs first and manifests last, to a registry or an OCI layout.
//
// Layers are streamed from their files on every read and never held in memory. packer
// depends on imageref and go-containerregistry; it knows nothing of how RAFS is built.
package packer

import "github.com/google/go-containerregistry/pkg/v1/types"

// MediaTypeNydusBlob is the media type of a data blob layer, in OCI and docker manifests
// alike (docs/nydus-image-layout.md §1).
const MediaTypeNydusBlob types.MediaType = "application/vnd.oci.image.layer.nydus.blob.v1"

// Annotation keys and values written by packer (docs/nydus-image-layout.md §2).
const (
	// AnnotationNydusBlob marks a data blob layer ("true").
	AnnotationNydusBlob = "containerd.io/snapshot/nydus-blob"
	// AnnotationNydusBootstrap marks the bootstrap layer, which must be the last ("true").
	AnnotationNydusBootstrap = "containerd.io/snapshot/nydus-bootstrap"
	// AnnotationFSVersion gives the RAFS version, on the bootstrap layer and the manifest.
	AnnotationFSVersion = "containerd.io/snapshot/nydus-fs-version"
	// AnnotationSourceDigest gives the digest of the source manifest, on the manifest.
	AnnotationSourceDigest = "containerd.io/snapshot/nydus-source-digest"
	// AnnotationSourceReference gives the source reference as the user wrote it, on the manifest.
	AnnotationSourceReference = "containerd.io/snapshot/nydus-source-reference"

	// FSVersion is the only RAFS version this toolchain writes.
	FSVersion = "6"
)

// BootstrapName is the bootstrap's path inside the bootstrap layer, where consumers look for it.
const BootstrapName = "image/image.boot"
