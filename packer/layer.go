package packer

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/nydus-go/nydusify/internal/verify"
)

// BlobLayer returns a layer over a Nydus data blob file, stored as it is (a blob is not
// compressed as a whole): Digest and DiffID are both the file's sha256, Size its length and
// MediaType [MediaTypeNydusBlob]. The file is hashed once here. Compressed and Uncompressed
// both open the file afresh on each call and stream it; the reader fails at its end if the
// file no longer matches the digest. The file must stay in place while the layer is used.
func BlobLayer(path string) (v1.Layer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hashing blob: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("hashing blob %s: %w", path, err)
	}
	return &fileLayer{path: path, digest: sumHash(h), diffID: sumHash(h), size: size, mediaType: MediaTypeNydusBlob}, nil
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
	return verify.ReadCloser(f, l.size, digest.Digest(l.digest.String()))
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

// NamedFile is a file to put into the bootstrap layer as image/<Name>.
type NamedFile struct {
	Name string // a single path element, e.g. "<layer digest hex>.blob.meta"
	Path string // the file on disk
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

// BootstrapLayer builds the last layer of a Nydus image: a gzip tar (Go's default level)
// holding the directory "image/" (0755), [BootstrapName] (0444) with the content of
// bootstrapPath, then one "image/<Name>" (0444) per extra file in the order given. Headers
// carry no owner, group or time, as nydus-snapshotter's packToTar writes them, so the same
// files give the same bytes. (packToTar names the directory "image", without the slash;
// consumers look files up by name, so either works.) mediaType must be a gzip layer type;
// [BootstrapMediaType] gives the one [Image] expects.
//
// The gzip stream is written to a new temporary file in workDir ("" means os.TempDir()),
// hashed on the way, and never held in memory. The returned layer reads that file, so it
// must outlive the layer's use; removing it (with workDir) is the caller's job.
func BootstrapLayer(bootstrapPath string, extra []NamedFile, mediaType types.MediaType, workDir string) (_ v1.Layer, err error) {
	if mediaType != types.OCILayer && mediaType != types.DockerLayer {
		return nil, fmt.Errorf("building bootstrap layer: media type %q is not a gzip layer type", mediaType)
	}
	files := append([]NamedFile{{Name: path.Base(BootstrapName), Path: bootstrapPath}}, extra...)
	seen := map[string]bool{}
	for _, nf := range files {
		if nf.Name == "" || nf.Name == "." || nf.Name == ".." || strings.Contains(nf.Name, "/") {
			return nil, fmt.Errorf("building bootstrap layer: %q is not a file name", nf.Name)
		}
		if seen[nf.Name] {
			return nil, fmt.Errorf("building bootstrap layer: %q appears twice", nf.Name)
		}
		seen[nf.Name] = true
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
	if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return nil, fmt.Errorf("building bootstrap layer: %w", err)
	}
	for _, nf := range files {
		if err := addFile(tw, dir+"/"+nf.Name, nf.Path); err != nil {
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

// addFile writes the file at src into tw as a read-only regular file called name.
func addFile(tw *tar.Writer, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%s shrank while being read", src)
		}
		return err
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("%s grew while being read", src)
	}
	return nil
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
