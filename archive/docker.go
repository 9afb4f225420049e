package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/internal/fsimage"
)

// dockerManifestEntry is one image of a docker save manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// blobPathRE matches layer paths that name their sha256 (docker 25 and later save into an
// OCI-style blobs/ directory), whose digests need not be computed.
var blobPathRE = regexp.MustCompile(`^blobs/sha256/[0-9a-f]{64}$`)

// OpenDocker opens the image of the docker save tarball file that has repoTag among its
// RepoTags, or with repoTag "" its only image. A docker archive has no registry manifest, so
// one is made as containerd's importer does: a docker schema 2 manifest listing the stored
// layer files as they are (media type by compression, uncompressed ones as
// rootfs.diff.tar), never recompressed. It is not encoded byte for byte like containerd's;
// the returned descriptor is its digest. Layers whose path does not carry their digest are
// read once here to compute it.
func OpenDocker(file, repoTag string) (v1.Descriptor, v1.Image, error) {
	s, err := indexTar(file)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	raw, err := fsimage.ReadFile(s, "manifest.json")
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading manifest.json: %w", err)
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("parsing manifest.json: %w", err)
	}
	entry, err := pickDockerImage(entries, repoTag)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	rawConfig, err := fsimage.ReadFile(s, entry.Config)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading config: %w", err)
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
			return v1.Descriptor{}, nil, fmt.Errorf("reading layer %s: %w", p, err)
		}
		m.Layers = append(m.Layers, desc)
		paths[desc.Digest] = cleanName(p)
	}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	desc := v1.Descriptor{MediaType: m.MediaType, Size: int64(len(rawManifest)), Digest: sha256Hash(rawManifest)}
	img, err := fsimage.Stored{
		FS: s, Descriptor: desc, RawManifest: rawManifest, Manifest: m, RawConfig: rawConfig,
		LayerPath: func(h v1.Hash) string { return paths[h] },
	}.Image()
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	return desc, img, nil
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
func describeLayer(s *tarFS, p string) (v1.Descriptor, error) {
	f, size, err := fsimage.Open(s, p)
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer f.Close()
	var head [4]byte
	n, err := io.ReadFull(f, head[:])
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
	if _, err := io.Copy(h, f); err != nil {
		return v1.Descriptor{}, err
	}
	desc.Digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return desc, nil
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
