// Package packer gives the output of a Nydus build the shape of a Nydus image. In one call
// it takes what the build already knows for one platform image (each data blob's file,
// digest, size and blob.meta, and the merged RAFS bootstrap as bytes), wraps the blobs as
// layers stored as they are and the bootstrap with the blob.meta files as a gzip tar under
// image/, and rewrites the source image's config and manifest the way nydus-snapshotter
// does (docs/nydus-image-layout.md). [Combine] puts several platform images into an index.
//
// The result is a ggcr v1.Image or v1.ImageIndex, which the caller hands to a place
// (registry, layout) to publish. Blob files are streamed, and verified against the
// digests the build reported, on every read; they are never re-hashed or held in memory.
// packer knows nothing of how RAFS is built or where images are stored.
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

	// FSVersion is the RAFS version written unless Build.FSVersion says "5".
	FSVersion = "6"
)

// BootstrapName is the bootstrap's path inside the bootstrap layer, where consumers look for it.
const BootstrapName = "image/image.boot"

// blobMetaSuffix names a blob's meta file in the bootstrap layer: image/<blob digest hex>.blob.meta.
const blobMetaSuffix = ".blob.meta"
