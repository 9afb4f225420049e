// Package tarstream turns OCI layer blobs into tar streams: it recognises
// gzip, zstd and uncompressed layers by their magic bytes and decompresses
// them ahead of the consumer in a goroutine, with bounded buffering.
package tarstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Open returns the uncompressed tar stream of a layer whose bytes r
// yields: gzip, zstd or a plain tar, told apart by magic bytes (so media types
// that lie do not matter), decompressed ahead of the reader in its own
// goroutine. Close stops it; r is not closed.
func Open(r io.Reader) (io.ReadCloser, error) {
	d, err := decompress(r)
	if err != nil {
		return nil, err
	}
	ra := readAhead(d, 1<<20, 16)
	return closeBoth{ra, d}, nil
}

type closeBoth struct {
	io.ReadCloser
	inner io.Closer
}

func (c closeBoth) Close() error {
	c.ReadCloser.Close()
	return c.inner.Close()
}

func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("layer gzip stream: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("layer zstd stream: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}
