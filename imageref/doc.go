// Package imageref says where images come from and where they go. It parses the image
// references the CLI accepts (registry, OCI layout directory, OCI archive, docker archive),
// dispatches opening and publishing to the package of each place images live in (registry,
// layout, archive), and selects from an opened source, a single manifest or an index, the
// platform images to convert.
//
// It holds no I/O of its own (but for looking at a path given without a prefix, to say
// which prefix it needs): adding a place means a package for it plus a case here.
// Opening a source reads its manifests and configs; a layer is read only when a caller
// opens it. It knows nothing of Nydus.
package imageref
