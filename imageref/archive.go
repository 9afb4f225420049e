package imageref

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tarStore reads the files of an uncompressed tar in place: indexing records where each
// file's data starts, and open reads that byte range through a fresh file handle, so nothing
// is extracted and any number of files can be read at once.
type tarStore struct {
	file    string
	entries map[string]tarEntry // by cleaned name; later entries replace earlier ones, as on extraction
}

// tarEntry is a regular file's data range, or a link to resolve.
type tarEntry struct {
	offset, size int64
	link         string // cleaned target name of a symlink or hardlink; "" for a regular file
}

// Magic numbers of the compressed streams layers and archives may hold.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// maxLinkHops bounds symlink chains (docker save links duplicate layers to each other).
const maxLinkHops = 16

func indexTar(file string) (*tarStore, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [4]byte
	if n, _ := io.ReadFull(f, magic[:]); bytes.HasPrefix(magic[:n], gzipMagic) || bytes.HasPrefix(magic[:n], zstdMagic) {
		return nil, errors.New("the archive is compressed; decompress it first")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	s := &tarStore{file: file, entries: map[string]tarEntry{}}
	// tar.Reader reads exactly the header blocks and seeks over data, so after Next the file
	// offset is where the entry's data begins.
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return s, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar headers: %w", err)
		}
		name := cleanName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, err
			}
			s.entries[name] = tarEntry{offset: off, size: hdr.Size}
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(name), target)
			}
			s.entries[name] = tarEntry{link: cleanName(target)}
		case tar.TypeLink:
			s.entries[name] = tarEntry{link: cleanName(hdr.Linkname)}
		default:
			// Directories and anything else are not files an image refers to.
			delete(s.entries, name)
		}
	}
}

// cleanName turns a tar or manifest path into the form entries are keyed by: slash-separated,
// relative, without "." or ".." elements.
func cleanName(p string) string { return path.Clean("/" + p)[1:] }

func (s *tarStore) open(name string) (io.ReadCloser, int64, error) {
	want := cleanName(name)
	e, ok := s.entries[want]
	for hops := 0; ok && e.link != ""; hops++ {
		if hops == maxLinkHops {
			return nil, 0, fmt.Errorf("%s in %s: too many links", name, s.file)
		}
		e, ok = s.entries[e.link]
	}
	if !ok {
		return nil, 0, fmt.Errorf("%s in %s: %w", name, s.file, os.ErrNotExist)
	}
	f, err := os.Open(s.file)
	if err != nil {
		return nil, 0, err
	}
	return sectionFile{SectionReader: io.NewSectionReader(f, e.offset, e.size), f: f}, e.size, nil
}

// sectionFile reads a byte range of a file it closes.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s sectionFile) Close() error { return s.f.Close() }

// dockerManifestEntry is one image of a docker save manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// blobPathRE matches layer paths that name their sha256 (docker 25 and later save into an
// OCI-style blobs/ directory), whose digests need not be computed.
var blobPathRE = regexp.MustCompile(`^blobs/sha256/[0-9a-f]{64}$`)

// openDockerArchive opens the image of a docker save tarball that has repoTag among its
// RepoTags, or with repoTag "" its only image. A docker archive has no registry manifest, so
// one is made as containerd's importer does: a docker schema 2 manifest listing the stored
// layer files as they are (uncompressed ones as rootfs.diff.tar), never recompressed. Layers
// whose path does not carry their digest are read once here to compute it.
func openDockerArchive(file, repoTag string) (*Source, error) {
	s, err := indexTar(file)
	if err != nil {
		return nil, err
	}
	raw, err := readFile(s, "manifest.json")
	if err != nil {
		return nil, fmt.Errorf("reading manifest.json: %w", err)
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("parsing manifest.json: %w", err)
	}
	entry, err := pickDockerImage(entries, repoTag)
	if err != nil {
		return nil, err
	}
	rawConfig, err := readFile(s, entry.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	m := &v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config: v1.Descriptor{
			MediaType: types.DockerConfigJSON,
			Size:      int64(len(rawConfig)),
			Digest:    sha256Hash(rawConfig),
		},
	}
	paths := map[v1.Hash]string{}
	for _, p := range entry.Layers {
		desc, err := describeLayer(s, cleanName(p))
		if err != nil {
			return nil, fmt.Errorf("reading layer %s: %w", p, err)
		}
		m.Layers = append(m.Layers, desc)
		paths[desc.Digest] = cleanName(p)
	}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	desc := v1.Descriptor{MediaType: m.MediaType, Size: int64(len(rawManifest)), Digest: sha256Hash(rawManifest)}
	img, err := partial.CompressedToImage(&storedImage{
		store: s, desc: desc, raw: rawManifest, manifest: m, rawConfig: rawConfig,
		layerPath: func(h v1.Hash) string { return paths[h] },
	})
	if err != nil {
		return nil, err
	}
	return &Source{desc: desc, image: img}, nil
}

func pickDockerImage(entries []dockerManifestEntry, repoTag string) (dockerManifestEntry, error) {
	var all []string
	for _, e := range entries {
		all = append(all, e.RepoTags...)
	}
	if repoTag == "" {
		if len(entries) != 1 {
			return dockerManifestEntry{}, fmt.Errorf("archive holds %d images, name one of %q", len(entries), all)
		}
		return entries[0], nil
	}
	want, err := name.NewTag(repoTag)
	if err != nil {
		return dockerManifestEntry{}, fmt.Errorf("parsing image name %q: %w", repoTag, err)
	}
	for _, e := range entries {
		for _, t := range e.RepoTags {
			// Compare resolved names: "busybox" and "index.docker.io/library/busybox:latest" agree.
			if have, err := name.NewTag(t); err == nil && have.Name() == want.Name() {
				return e, nil
			}
		}
	}
	return dockerManifestEntry{}, fmt.Errorf("archive has no image named %s (it has %q)", repoTag, all)
}

// describeLayer makes the manifest descriptor of a stored layer file: its media type from
// the compression its first bytes show, and its digest from its path or by hashing it.
func describeLayer(s fileStore, p string) (v1.Descriptor, error) {
	rc, size, err := s.open(p)
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer rc.Close()
	var head [4]byte
	n, err := io.ReadFull(rc, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: types.DockerUncompressedLayer, Size: size}
	switch {
	case bytes.HasPrefix(head[:n], gzipMagic):
		desc.MediaType = types.DockerLayer
	case bytes.HasPrefix(head[:n], zstdMagic):
		desc.MediaType = types.OCILayerZStd
	}
	if blobPathRE.MatchString(p) {
		// Reads verify the content against this digest later.
		desc.Digest = v1.Hash{Algorithm: "sha256", Hex: path.Base(p)}
		return desc, nil
	}
	h := sha256.New()
	h.Write(head[:n])
	if _, err := io.Copy(h, rc); err != nil {
		return v1.Descriptor{}, err
	}
	desc.Digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return desc, nil
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
