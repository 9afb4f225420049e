package packer

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/internal/verify"
)

// blobLayer returns a layer over a Nydus data blob file, stored as it is (a blob is not
// compressed as a whole): Digest and DiffID are both b.Digest, Size b.Size and MediaType
// [MediaTypeNydusBlob], or b.Layer when set. The file is not read here. Compressed and Uncompressed both open
// it afresh on each call and stream it; the reader fails at its end if the file does not
// match the digest and size.
func blobLayer(b Blob) (v1.Layer, error) {
	if b.Digest.Algorithm != "sha256" || len(b.Digest.Hex) != 64 || strings.Trim(b.Digest.Hex, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("blob %s: digest %q is not a sha256 digest", b.Path, b.Digest)
	}
	if b.Size < 0 {
		return nil, fmt.Errorf("blob %s: negative size %d", b.Path, b.Size)
	}
	if b.Layer != nil {
		return b.Layer, nil
	}
	return &fileLayer{path: b.Path, digest: b.Digest, diffID: b.Digest, size: b.Size, mediaType: MediaTypeNydusBlob}, nil
}

// fileLayer is a layer stored in a file: as it is when digest == diffID, otherwise gzip.
type fileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mediaType      types.MediaType
}

var _ v1.Layer = (*fileLayer)(nil)

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// Compressed opens the file, verified against the layer's digest and size.
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("opening layer %s: %w", l.digest, err)
	}
	return verify.ReadCloser(f, l.size, l.digest)
}

// Uncompressed opens the file and, for a gzip layer, decompresses it.
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil || l.digest == l.diffID {
		return rc, err
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("decompressing layer %s: %w", l.digest, err)
	}
	return readCloser{Reader: zr, close: rc.Close}, nil
}

// readCloser joins a reader to the close of what it reads from.
type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// namedFile is a file to put into the bootstrap layer as image/<name>.
type namedFile struct {
	name string // a single path element, e.g. "<blob digest hex>.blob.meta"
	data []byte
}

// BootstrapMediaType returns the media type of the bootstrap layer in an image whose source
// manifest has media type manifestType: the OCI gzip layer type for an OCI manifest, the
// docker one otherwise (docs/nydus-image-layout.md §1).
func BootstrapMediaType(manifestType types.MediaType) types.MediaType {
	if manifestType == types.OCIManifestSchema1 {
		return types.OCILayer
	}
	return types.DockerLayer
}

// bootstrapLayer builds the last layer of a Nydus image: a gzip tar (Go's default level)
// holding the directory "image" (0755), [BootstrapName] (0444) with the content
// bootstrap, then one "image/<name>" (0444) per extra file in the order given. Headers
// carry no owner, group or time, as nydus-snapshotter's packToTar writes them, so the same
// files give the same bytes. mediaType must be a gzip layer type;
// [BootstrapMediaType] gives the one [Image] expects.
//
// The gzip stream is written to a new temporary file in workDir ("" means os.TempDir()),
// hashed on the way, and never held in memory. The returned layer reads that file, so it
// must outlive the layer's use; removing it (with workDir) is the caller's job.
func bootstrapLayer(bootstrap []byte, extra []namedFile, mediaType types.MediaType, workDir string) (_ v1.Layer, err error) {
	if mediaType != types.OCILayer && mediaType != types.DockerLayer {
		return nil, fmt.Errorf("building bootstrap layer: media type %q is not a gzip layer type", mediaType)
	}
	files := append([]namedFile{{name: path.Base(BootstrapName), data: bootstrap}}, extra...)
	seen := map[string]bool{}
	for _, nf := range files {
		if nf.name == "" || nf.name == "." || nf.name == ".." || strings.Contains(nf.name, "/") {
			return nil, fmt.Errorf("building bootstrap layer: %q is not a file name", nf.name)
		}
		if seen[nf.name] {
			return nil, fmt.Errorf("building bootstrap layer: %q appears twice", nf.name)
		}
		seen[nf.name] = true
	}
	out, err := os.CreateTemp(workDir, "bootstrap-*.tar.gz")
	if err != nil {
		return nil, fmt.Errorf("building bootstrap layer: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("building bootstrap layer: %w", cerr)
		}
		if err != nil {
			os.Remove(out.Name())
		}
	}()
	gzSum, tarSum := sha256.New(), sha256.New()
	gzSize := &countWriter{w: io.MultiWriter(out, gzSum)}
	zw := gzip.NewWriter(gzSize)
	tw := tar.NewWriter(io.MultiWriter(zw, tarSum))
	dir := path.Dir(BootstrapName)
	// Named "image", without a trailing slash, exactly as nydus-snapshotter's packToTar
	// writes it, so the same bootstrap gives the same layer digest as upstream's.
	if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return nil, fmt.Errorf("building bootstrap layer: %w", err)
	}
	for _, nf := range files {
		hdr := &tar.Header{Name: dir + "/" + nf.name, Mode: 0o444, Size: int64(len(nf.data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("building bootstrap layer: %w", err)
		}
		if _, err := tw.Write(nf.data); err != nil {
			return nil, fmt.Errorf("building bootstrap layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("building bootstrap layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("building bootstrap layer: %w", err)
	}
	if err := out.Sync(); err != nil {
		return nil, fmt.Errorf("building bootstrap layer: %w", err)
	}
	return &fileLayer{path: out.Name(), digest: sumHash(gzSum), diffID: sumHash(tarSum), size: gzSize.n, mediaType: mediaType}, nil
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func sumHash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}
