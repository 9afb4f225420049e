package imageref

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/archive"
	"github.com/nydus-go/nydusify/layout"
	"github.com/nydus-go/nydusify/registry"
)

// Source is an opened source image: a single manifest or an index. Its manifests, configs
// and layers are read on demand; it holds no open files and needs no closing. It is safe
// for concurrent use.
type Source struct {
	desc  v1.Descriptor
	image v1.Image      // set for a single manifest
	index v1.ImageIndex // set for an index
}

// OpenSource resolves ref to its manifest or index, through the package of the place it
// lives in:
//
//   - Registry ([registry.Open]): fetches the manifest with opts.
//   - OCILayout ([layout.Open]), OCIArchive ([archive.OpenOCI]): reads index.json and picks
//     the entry whose org.opencontainers.image.ref.name is ref.Name, or with Name "" the
//     only entry. An archive is read in place (it must be an uncompressed tar), never
//     extracted.
//   - DockerArchive ([archive.OpenDocker]): picks the image with ref.Name among its
//     RepoTags, or with Name "" the only image. docker save records no manifest, so one is
//     made for the layers as stored (see [Source.Digest]); computing it reads every layer
//     whose digest the archive does not record once.
//
// Blobs read from layouts and archives are verified against their digests as they stream.
// opts only matters for registries.
func OpenSource(ctx context.Context, ref Ref, opts registry.Options) (*Source, error) {
	var (
		desc v1.Descriptor
		a    artifact
		err  error
	)
	switch ref.Kind {
	case Registry:
		desc, a, err = registry.Open(ctx, ref.Name, opts)
	case OCILayout:
		desc, a, err = layout.Open(ref.Path, ref.Name)
	case OCIArchive:
		desc, a, err = archive.OpenOCI(ref.Path, ref.Name)
	case DockerArchive:
		desc, a, err = archive.OpenDocker(ref.Path, ref.Name)
	default:
		err = fmt.Errorf("unknown kind %s", ref.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", ref, err)
	}
	src := &Source{desc: desc}
	switch a := a.(type) {
	case v1.ImageIndex:
		src.index = a
	case v1.Image:
		src.image = a
	default:
		return nil, fmt.Errorf("opening %s: %T is neither an image nor an index", ref, a)
	}
	return src, nil
}

// Digest returns the digest of the source manifest or index. For a docker archive it is the
// digest of the docker schema 2 manifest made for the stored layers, which lists them as
// containerd's importer does (media type by compression, digest of the stored file) but is
// not encoded byte for byte like containerd's.
func (s *Source) Digest() v1.Hash { return s.desc.Digest }

// MediaType returns the media type of the source manifest or index.
func (s *Source) MediaType() types.MediaType { return s.desc.MediaType }

// IsIndex reports whether the source is an index (OCI image index or docker manifest list).
func (s *Source) IsIndex() bool { return s.index != nil }

// PlatformImage is one platform manifest of a source.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
	// Descriptor is the manifest's: media type, digest, size, and the platform and
	// annotations the index lists it with.
	Descriptor v1.Descriptor
}

// Images returns the platform images to convert, in index order.
//
// For a single manifest it returns that image, with the platform its config declares. A
// single manifest is the image its reference names, whichever platform that is, so nil
// platforms (the host's default) take it as it is. Explicit platforms must match what the
// config declares: a single-platform linux/amd64 image asked for linux/arm64 is an error
// naming linux/amd64, never silently converted. A config that declares no platform (no os
// and architecture) says nothing to contradict, so it is taken for any platform.
//
// For an index: with all set, every image manifest; otherwise those matching platforms, and
// with platforms nil the host's "linux/<GOARCH>". A platform without a variant matches any
// variant, and arm64 without a variant is taken as arm64/v8. Each requested platform must
// match at least one manifest. Entries that are not convertible images are never returned
// but listed in skipped: attestation manifests (platform unknown/unknown, or annotation
// vnd.docker.reference.type=attestation-manifest), nested indexes and other artifacts.
// all together with platforms is an error.
func (s *Source) Images(platforms []v1.Platform, all bool) (images []PlatformImage, skipped []v1.Descriptor, err error) {
	if all && len(platforms) > 0 {
		return nil, nil, fmt.Errorf("selecting images: all platforms and explicit platforms %s conflict", platformList(platforms))
	}
	if s.image != nil {
		p, err := configPlatform(s.image)
		if err != nil {
			return nil, nil, err
		}
		if len(platforms) > 0 && p.OS != "" && p.Architecture != "" &&
			!slices.ContainsFunc(platforms, func(want v1.Platform) bool { return platformMatches(want, p) }) {
			return nil, nil, fmt.Errorf("selecting images: %s is a single-platform image for %s; it has no manifest for %s",
				s.desc.Digest, p, platformList(platforms))
		}
		desc := s.desc
		desc.Platform = &p
		return []PlatformImage{{Platform: p, Image: s.image, Descriptor: desc}}, nil, nil
	}
	if platforms == nil && !all {
		platforms = []v1.Platform{{OS: "linux", Architecture: runtime.GOARCH}}
	}
	im, err := s.index.IndexManifest()
	if err != nil {
		return nil, nil, fmt.Errorf("reading index %s: %w", s.desc.Digest, err)
	}
	matched := make([]bool, len(platforms))
	var available []v1.Platform
	for _, desc := range im.Manifests {
		if !desc.MediaType.IsImage() || isAttestation(desc) {
			skipped = append(skipped, desc)
			continue
		}
		// A manifest is read only when its platform is not in the index or it is selected.
		var img v1.Image
		if desc.Platform == nil {
			if img, err = s.child(desc.Digest); err != nil {
				return nil, nil, err
			}
			p, err := configPlatform(img)
			if err != nil {
				return nil, nil, err
			}
			desc.Platform = &p
		}
		p := *desc.Platform
		available = append(available, p)
		selected := all
		for i, want := range platforms {
			if platformMatches(want, p) {
				matched[i], selected = true, true
			}
		}
		if !selected {
			continue
		}
		if img == nil {
			if img, err = s.child(desc.Digest); err != nil {
				return nil, nil, err
			}
		}
		images = append(images, PlatformImage{Platform: p, Image: img, Descriptor: desc})
	}
	for i, ok := range matched {
		if !ok {
			return nil, nil, fmt.Errorf("selecting images: index %s has no manifest for %s (it has %s)",
				s.desc.Digest, platforms[i], platformList(available))
		}
	}
	if len(images) == 0 {
		return nil, nil, fmt.Errorf("selecting images: index %s has no convertible image", s.desc.Digest)
	}
	return images, skipped, nil
}

// child opens an image the index lists.
func (s *Source) child(h v1.Hash) (v1.Image, error) {
	img, err := s.index.Image(h)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", h, err)
	}
	return img, nil
}

// isAttestation reports whether an index entry is a build attestation (buildkit's provenance
// and SBOM manifests), which has no filesystem to convert.
func isAttestation(d v1.Descriptor) bool {
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

// configPlatform returns the platform an image's config declares.
func configPlatform(img v1.Image) (v1.Platform, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return v1.Platform{}, fmt.Errorf("reading image config: %w", err)
	}
	if p := cfg.Platform(); p != nil {
		return *p, nil
	}
	return v1.Platform{}, nil
}

// platformMatches reports whether have satisfies want, after defaulting arm64's variant.
func platformMatches(want, have v1.Platform) bool {
	return normalizeVariant(have).Satisfies(normalizeVariant(want))
}

func normalizeVariant(p v1.Platform) v1.Platform {
	if p.Architecture == "arm64" && p.Variant == "" {
		p.Variant = "v8"
	}
	return p
}

// ParsePlatforms parses a comma-separated list of "os/arch[/variant]" platforms, such as
// "linux/amd64,linux/arm64/v8". An empty string returns nil, which [Source.Images] takes as
// the host platform.
func ParsePlatforms(s string) ([]v1.Platform, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ps []v1.Platform
	for item := range strings.SplitSeq(s, ",") {
		p, err := v1.ParsePlatform(item)
		if err != nil {
			return nil, fmt.Errorf("parsing platform %q: %w", item, err)
		}
		if p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("parsing platform %q: want os/arch[/variant]", item)
		}
		if !slices.ContainsFunc(ps, p.Equals) {
			ps = append(ps, *p)
		}
	}
	return ps, nil
}

// ParsePlatform parses one "os/arch[/variant]" platform; "" returns nil, the host's.
func ParsePlatform(s string) (*v1.Platform, error) {
	ps, err := ParsePlatforms(s)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	if len(ps) != 1 {
		return nil, fmt.Errorf("parsing platform %q: want one platform", s)
	}
	return &ps[0], nil
}

// OpenImage opens ref (imageref syntax) and returns its one image for platform (nil: the
// host's), as [Source.Images] selects it.
func OpenImage(ctx context.Context, ref string, opts registry.Options, platform *v1.Platform) (*PlatformImage, error) {
	r, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	src, err := OpenSource(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	var platforms []v1.Platform
	if platform != nil {
		platforms = []v1.Platform{*platform}
	}
	images, _, err := src.Images(platforms, false)
	if err != nil {
		return nil, err
	}
	if len(images) != 1 {
		return nil, fmt.Errorf("%s: %d manifests match the platform, want one", ref, len(images))
	}
	return &images[0], nil
}

func platformList(ps []v1.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
