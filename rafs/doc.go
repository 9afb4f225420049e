// Package rafs owns the Nydus RAFS v6 on-disk format: the bootstrap (an EROFS
// image whose regular files are chunk-based and whose chunks live on extra
// devices, the data blobs) and the blob's trailing metadata (chunk-info array,
// compression-context header, chunk digest array, table of contents).
//
// It provides fixed-size encoders and decoders for every structure, the
// compressors and digesters the format names, a validating Reader over a
// bootstrap held in an io.ReaderAt, and Image: a bootstrap with its blobs,
// whose BlobReaders read verified chunks and whose WriteBlobView expands a
// blob into the uncompressed address space the kernel reads as an EROFS
// device.
//
// # Trust
//
// This package, not its callers, decides what a chunk is checked against.
// The chain runs from the image's manifest down to every byte served:
//
//  1. The manifest names the bootstrap layer by digest; whoever fetched it
//     (an image place, the checker) checks that digest. From here on the
//     bootstrap is the only thing trusted.
//  2. The bootstrap's blob table names each blob (its id is the sha256 of
//     the blob) with its sizes, compressor, digester and where its chunk
//     information lies; its chunk table (§1.13) records, for every chunk a
//     file uses, the digest of the uncompressed chunk, its compressed and
//     uncompressed sizes and offsets, and whether it is compressed; each
//     file's chunk indexes (§1.12) name a (blob, chunk index, block address).
//  3. A blob is only bytes. Its chunk-info array, read through a
//     ChunkInfoSource (v1 today; v2 and ZRAN contexts plug in at
//     LoadChunkInfo), says where chunks lie, and is used only after every
//     record the chunk table holds for the blob agrees with it. The blob's
//     own digest array (§2.7) and TOC are the blob vouching for itself and
//     are never used to verify anything.
//  4. A chunk is served only after its decompressed bytes match the chunk
//     table's size and digest (BlobReader.ReadChunk, or DecodeChunk for
//     bytes a cache fetched itself); a chunk the table does not record
//     cannot be read. A file's chunk index is honoured only when the table
//     records the chunk it names, at its block address, with exactly the
//     bytes the file needs at that place (BlobReader.Resolve).
//
// Image.Verify runs the whole chain over an image, the way estargz's
// VerifyTOC does for a TOC.
//
// Byte layouts and section numbers (§) refer to docs/rafs-format.md, which
// records upstream Nydus v2.4 behaviour. This package imports hashing and
// compression libraries only: no network, no OCI, no FUSE. Every length or count read from untrusted
// bytes is checked before use; malformed input yields an error wrapping
// ErrCorrupt, never a panic.
package rafs
