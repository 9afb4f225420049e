package imagemount

import "github.com/nydus-go/nydusify/rafs"

// The external tests (package imagemount_test, which mount through
// mountcheck and so cannot be in this package) look inside a Mount here.

// Reader is the mounted bootstrap.
func (m *Mount) Reader() *rafs.Reader { return m.rd }

// ChunkCached reports whether chunk of blob is in the chunk cache.
func (m *Mount) ChunkCached(blob int, chunk uint32) bool { return m.caches[blob].Ready(chunk) }

// TableChunks lists the chunks of blob that the bootstrap's chunk table records.
func (m *Mount) TableChunks(blob int) []uint32 { return m.caches[blob].Blob().TableChunks() }
