// Package rafs owns the Nydus RAFS v6 on-disk format: the bootstrap (an EROFS
// image whose regular files are chunk-based and whose chunks live on extra
// devices, the data blobs) and the blob's trailing metadata (chunk-info array,
// compression-context header, chunk digest array, table of contents).
//
// It provides fixed-size encoders and decoders for every structure, the
// compressors and digesters the format names, a validating Reader over a
// bootstrap held in an io.ReaderAt, a BlobReader over a data blob, and
// WriteBlobView, which expands a blob into the uncompressed address space the
// kernel reads as an EROFS device.
//
// Byte layouts and section numbers (§) refer to docs/rafs-format.md,
// which records upstream Nydus v2.4 behaviour. This package imports hashing and
// compression libraries only: no network, no OCI, no FUSE. Every length or count
// read from untrusted bytes is checked before use; malformed input yields an
// error wrapping ErrCorrupt, never a panic.
package rafs
