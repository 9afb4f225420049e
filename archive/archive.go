// Package archive is the place images live in tar files: an OCI archive (a tar of an OCI
// image layout, oci-archive:FILE[:TAG]) and a "docker save" tarball
// (docker-archive:FILE[:REF]). Archives are read in place, never extracted: indexing the
// tar records where each file's data starts, and every read opens that byte range afresh,
// verified against its digest as it streams. Compressed archives are refused. Writing
// archives is not supported yet. It speaks ggcr's v1.Image and v1.ImageIndex and knows
// nothing of Nydus.
package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nydus-go/nydusify/layout"
)

// OpenOCI reads the OCI archive file and returns the image or index its index.json names by
// tag, as [layout.Open] does for a directory.
func OpenOCI(file, tag string) (v1.Descriptor, layout.Artifact, error) {
	s, err := indexTar(file)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	return layout.OpenFS(s, tag)
}

// Formats reports which archive formats file holds: an OCI archive (the tar has an
// index.json) and a docker save tarball (it has a manifest.json). Docker 25 and later write
// both into one tar. Only the tar headers are read; a compressed file is an error.
func Formats(file string) (oci, docker bool, err error) {
	s, err := indexTar(file)
	if err != nil {
		return false, false, err
	}
	_, oci = s.entries["index.json"]
	_, docker = s.entries["manifest.json"]
	return oci, docker, nil
}

// tarFS reads the files of an uncompressed tar in place: indexing records where each
// file's data starts, and Open reads that byte range through a fresh file handle, so nothing
// is extracted and any number of files can be read at once.
type tarFS struct {
	file    string
	entries map[string]tarEntry // by cleaned name; later entries replace earlier ones, as on extraction
}

var _ fs.FS = (*tarFS)(nil)

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

func indexTar(file string) (*tarFS, error) {
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
	s := &tarFS{file: file, entries: map[string]tarEntry{}}
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

// Open opens the regular file name refers to, following links. Names are cleaned as tar
// entries are, so "./a" and "a" are the same file.
func (s *tarFS) Open(name string) (fs.File, error) {
	want := cleanName(name)
	e, ok := s.entries[want]
	for hops := 0; ok && e.link != ""; hops++ {
		if hops == maxLinkHops {
			return nil, fmt.Errorf("%s in %s: too many links", name, s.file)
		}
		e, ok = s.entries[e.link]
	}
	if !ok {
		return nil, fmt.Errorf("%s in %s: %w", name, s.file, os.ErrNotExist)
	}
	f, err := os.Open(s.file)
	if err != nil {
		return nil, err
	}
	return &sectionFile{SectionReader: io.NewSectionReader(f, e.offset, e.size), f: f, name: path.Base(want)}, nil
}

// sectionFile reads a byte range of a file it closes.
type sectionFile struct {
	*io.SectionReader
	f    *os.File
	name string
}

func (s *sectionFile) Close() error               { return s.f.Close() }
func (s *sectionFile) Stat() (fs.FileInfo, error) { return s, nil }

// sectionFile is its own fs.FileInfo: a read-only regular file.
func (s *sectionFile) Name() string       { return s.name }
func (s *sectionFile) Mode() fs.FileMode  { return 0o444 }
func (s *sectionFile) ModTime() time.Time { return time.Time{} }
func (s *sectionFile) IsDir() bool        { return false }
func (s *sectionFile) Sys() any           { return nil }
