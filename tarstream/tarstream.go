// Package tarstream turns OCI layer blobs into tar streams: it recognises
// gzip, zstd and uncompressed layers by their magic bytes and decompresses
// them ahead of the consumer in a goroutine, with bounded buffering.
package tarstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Open returns the uncompressed tar stream of a layer whose bytes r
// yields: gzip, zstd or a plain tar, told apart by magic bytes (so media types
// that lie do not matter), decompressed ahead of the reader in its own
// goroutine. Close stops it; r is not closed.
//
// The stream ends with io.EOF only at the true end of the compressed data,
// once its checks have passed: the CRC-32 and size trailer of every gzip
// member, the checksum of every zstd frame that has one. A truncated layer
// reads as an error wrapping ErrTruncated. A consumer that stops at the
// tar's end-of-archive marker must read on to EOF to have the layer checked.
func Open(r io.Reader) (io.ReadCloser, error) {
	d, kind, err := decompress(r)
	if err != nil {
		return nil, err
	}
	ra := readAhead(streamErrors{d, kind}, bufSize, aheadDepth)
	return closeBoth{ra, d}, nil
}

// Buffering: compressed input is read in bufSize pieces and decompressed up
// to aheadDepth buffers of bufSize ahead of the consumer. Variables so that
// fuzzing can run with small buffers (and more buffer boundaries).
var bufSize, aheadDepth = 1 << 20, 16

// ErrTruncated is wrapped by read errors of a compressed layer that ends
// before its compressed stream does: a missing gzip trailer (CRC-32 and
// size), a cut deflate or zstd block, a missing zstd frame checksum.
var ErrTruncated = errors.New("layer stream truncated")

// streamErrors names the compression in the errors of the decompressor d
// and tells truncation apart from other corruption.
type streamErrors struct {
	d    io.Reader
	kind string
}

func (s streamErrors) Read(p []byte) (int, error) {
	n, err := s.d.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w (the %s data ends early): %w", ErrTruncated, s.kind, err)
	default:
		err = fmt.Errorf("layer %s stream: %w", s.kind, err)
	}
	return n, err
}

type closeBoth struct {
	io.ReadCloser
	inner io.Closer
}

func (c closeBoth) Close() error {
	c.ReadCloser.Close()
	return c.inner.Close()
}

// maxZstdWindow is the largest zstd window a layer may declare: the
// reference zstd decoder's default limit (window log 27), above which zstd
// itself refuses a frame unless given --memory. The decoder allocates the
// window when a frame starts, so the frame header, not the data, decides
// this memory: without a cap a 14-byte frame costs hundreds of MiB.
const maxZstdWindow = 128 << 20

// decompress recognises the layer's compression; the stream it returns
// reads to the true end of the compressed data, checking the gzip trailer of
// every member and the zstd frame checksums that are present.
func decompress(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, bufSize)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, "", fmt.Errorf("reading layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("layer gzip stream: %w", err)
		}
		zr.Multistream(false)
		return &gzipMembers{br: br, zr: zr}, "gzip", nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, "", fmt.Errorf("layer zstd stream: %w", err)
		}
		return zr.IOReadCloser(), "zstd", nil
	}
	return io.NopCloser(br), "plain", nil
}

// gzipMembers reads the members of a gzip layer one after another, strictly:
// bytes after a member must form another complete member, as compress/gzip
// requires. klauspost's own multistream mode reads a later member whose
// header is cut inside its name or comment as a clean end of the stream.
type gzipMembers struct {
	br *bufio.Reader
	zr *gzip.Reader
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		// The member ended and its trailer checked out: is there another?
		if _, err := g.br.Peek(1); err != nil {
			return n, err // io.EOF: the true end
		}
		if err := g.zr.Reset(g.br); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		g.zr.Multistream(false)
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
}

func (g *gzipMembers) Close() error { return g.zr.Close() }
