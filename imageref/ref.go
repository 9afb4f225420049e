package imageref

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nydus-go/nydusify/archive"
)

// Kind says where an image lives.
type Kind int

const (
	// Registry is an image in a registry, named by "host[:port]/repo:tag" or "…@sha256:…".
	Registry Kind = iota
	// OCILayout is an OCI image layout directory ("oci:DIR[:TAG]").
	OCILayout
	// OCIArchive is a tar of an OCI image layout ("oci-archive:FILE[:TAG]").
	OCIArchive
	// DockerArchive is a "docker save" tarball ("docker-archive:FILE[:REF]").
	DockerArchive
)

// kindNames are the transport names, indexed by Kind; those after Registry are also the
// prefixes Parse recognises.
var kindNames = [...]string{Registry: "registry", OCILayout: "oci", OCIArchive: "oci-archive", DockerArchive: "docker-archive"}

// String returns the transport name: "registry", "oci", "oci-archive" or "docker-archive".
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Ref names an image source or target.
type Ref struct {
	Kind Kind
	// Path is the layout directory or archive file; empty for Registry.
	Path string
	// Name is the registry reference for Registry; for the other kinds the tag (OCI layout and
	// archive: the org.opencontainers.image.ref.name annotation) or the repo:tag (docker
	// archive: one of its RepoTags) inside it, and may be empty.
	Name string
}

// Parse accepts:
//
//	oci:DIR[:TAG]              an OCI image layout directory
//	oci-archive:FILE[:TAG]     a tar of an OCI image layout
//	docker-archive:FILE[:REF]  a "docker save" tarball; REF is one of its repo:tag names
//	anything else              a registry reference: "host[:port]/repo[:tag]" or "…@sha256:…"
//
// A reference that starts as a file path does ("/", "./", "../", "~/", or just "." or "..")
// is never a registry reference, whose first part is a host: it is an error that says what
// is at that path and which prefix reads it (this reads the path's file type, and a file's
// tar headers).
//
// For the first three the path ends at the first ':' after the prefix, so paths containing
// ':' are not supported; whatever follows is the name inside. A registry host literally
// called "oci", "oci-archive" or "docker-archive" must therefore be written with a domain.
// Registry references follow the docker conventions: "ubuntu" means
// index.docker.io/library/ubuntu:latest.
func Parse(s string) (Ref, error) {
	for k := OCILayout; int(k) < len(kindNames); k++ {
		rest, ok := strings.CutPrefix(s, kindNames[k]+":")
		if !ok {
			continue
		}
		path, tag, hasTag := strings.Cut(rest, ":")
		if path == "" {
			return Ref{}, fmt.Errorf("parsing %q: empty %s path", s, k)
		}
		if hasTag && tag == "" {
			return Ref{}, fmt.Errorf("parsing %q: empty name after ':'", s)
		}
		if k == DockerArchive && tag != "" {
			if _, err := name.NewTag(tag); err != nil {
				return Ref{}, fmt.Errorf("parsing %q: image name in docker archive: %w", s, err)
			}
		}
		return Ref{Kind: k, Path: path, Name: tag}, nil
	}
	if s == "" {
		return Ref{}, errors.New("parsing image reference: empty")
	}
	// "demo/oci:sample": a layout directory (or an archive) and the name in it,
	// with the prefix forgotten. Without this check it parses as a Docker Hub
	// reference.
	if p, tag, ok := strings.Cut(s, ":"); ok && tag != "" && p != "" {
		if _, err := os.Stat(filepath.Join(p, "index.json")); err == nil {
			return Ref{}, fmt.Errorf("%q names the local OCI image layout %s and its tag %s, not a registry image: use oci:%s", s, p, tag, s)
		}
		if oci, docker, err := archive.Formats(p); err == nil && (oci || docker) {
			prefix := map[bool]string{true: "oci-archive:", false: "docker-archive:"}[oci]
			return Ref{}, fmt.Errorf("%q names the local image archive %s, not a registry image: use %s%s", s, p, prefix, s)
		}
	}
	if looksLikePath(s) {
		return Ref{}, localPathError(s)
	}
	if _, err := name.ParseReference(s); err != nil {
		return Ref{}, fmt.Errorf("parsing image reference %q: %w", s, err)
	}
	return Ref{Kind: Registry, Name: s}, nil
}

// ParseTarget parses s as Parse does, for a place to write an image: a
// plain path is answered with the prefix that writes an OCI image layout
// there, the one kind of local target there is.
func ParseTarget(s string) (Ref, error) {
	if looksLikePath(s) {
		return Ref{}, fmt.Errorf("%q is written as a local path, not an image reference: to write an OCI image layout there, use oci:%s (oci:%s:TAG to tag the image)", s, s, s)
	}
	return Parse(s)
}

// String returns the reference in the form Parse accepts.
func (r Ref) String() string {
	if r.Kind == Registry {
		return r.Name
	}
	if r.Name == "" {
		return r.Kind.String() + ":" + r.Path
	}
	return r.Kind.String() + ":" + r.Path + ":" + r.Name
}

// WithSuffix returns the target named by appending suffix to the tag of a registry reference,
// as --target-suffix does: "repo" becomes "repo:latest<suffix>", "repo:v1" becomes
// "repo:v1<suffix>". The rest of the reference is kept as written. Digest references, other
// kinds and an empty suffix are refused, as is a result that is not a valid tag.
func (r Ref) WithSuffix(suffix string) (Ref, error) {
	if suffix == "" {
		return Ref{}, errors.New("adding a tag suffix: empty suffix")
	}
	if r.Kind != Registry {
		return Ref{}, fmt.Errorf("adding tag suffix %q to %s: only registry references take a suffix", suffix, r)
	}
	ref, err := name.ParseReference(r.Name)
	if err != nil {
		return Ref{}, fmt.Errorf("adding tag suffix %q: parsing %q: %w", suffix, r.Name, err)
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return Ref{}, fmt.Errorf("adding tag suffix %q to %s: digest references have no tag to extend", suffix, r.Name)
	}
	// Split off the tag the way name.NewTag does: after the last ':' unless a '/' follows it
	// (then the ':' belonged to a registry port and the tag was implied).
	repo := r.Name
	if i := strings.LastIndex(r.Name, ":"); i >= 0 && !strings.Contains(r.Name[i+1:], "/") {
		repo = r.Name[:i]
	}
	target := repo + ":" + tag.TagStr() + suffix
	if _, err := name.NewTag(target); err != nil {
		return Ref{}, fmt.Errorf("adding tag suffix %q to %s: %w", suffix, r.Name, err)
	}
	return Ref{Kind: Registry, Name: target}, nil
}

// looksLikePath reports whether s is written as a file path: no registry reference starts
// with "/" or ".", and "~/" is a shell's home that was not expanded.
func looksLikePath(s string) bool {
	return s == "." || s == ".." || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") ||
		strings.HasPrefix(s, "../") || strings.HasPrefix(s, "~/")
}

// localPathError explains a reference written as the path p: what is there, and the prefix
// that reads it as an image.
func localPathError(p string) error {
	const how = "; a registry reference looks like host[:port]/repo[:tag], and a local image is named oci:DIR, oci-archive:FILE or docker-archive:FILE"
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return fmt.Errorf("%q is written as a local path, but %v%s", p, err, how)
	case fi.IsDir():
		if _, err := os.Stat(filepath.Join(p, "index.json")); err == nil {
			return fmt.Errorf("%q is a local OCI image layout directory, not an image reference: use oci:%s (oci:%s:TAG to pick a tag)", p, p, p)
		}
		return fmt.Errorf("%q is a local directory but not an OCI image layout (it has no index.json)%s", p, how)
	}
	oci, docker, err := archive.Formats(p)
	switch {
	case err != nil:
		return fmt.Errorf("%q is a local file, but not an image archive (%v)%s", p, err, how)
	case oci && docker:
		return fmt.Errorf("%q is a local image archive, not an image reference: use oci-archive:%s or docker-archive:%s", p, p, p)
	case oci:
		return fmt.Errorf("%q is a local OCI archive, not an image reference: use oci-archive:%s", p, p)
	case docker:
		return fmt.Errorf("%q is a local docker save archive, not an image reference: use docker-archive:%s", p, p)
	}
	return fmt.Errorf("%q is a local tar file, but neither an OCI archive (no index.json) nor a docker save archive (no manifest.json)%s", p, how)
}
