// Package imageref says where images come from and where they go: it parses the image
// references the CLI accepts (registry, OCI layout directory, OCI archive, docker archive),
// turns registry settings into go-containerregistry options, and opens a source image as a
// single manifest or an index from which the platform images to convert are selected.
//
// Opening a source reads its manifests and configs; a layer is read only when a caller opens
// it. Archives are never extracted (files are read in place, by offset, from the tar), and
// every blob read from a layout or archive is checked against its digest as it streams.
// It knows nothing of Nydus; the packer package writes converted images back through it.
package imageref
