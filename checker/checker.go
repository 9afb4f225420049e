// Package checker proves that a Nydus image equals its source image, and
// reports every difference rather than stopping at the first.
//
// Three rules run, none stopping the others:
//   - manifest: layer media types and annotations, diff_id count, the
//     bootstrap layer's diff_id, and (with a source) the runtime config;
//   - bootstrap: our validating reader walks the whole bootstrap (v6 or v5;
//     a v5 bootstrap's Merkle tree is recomputed and every inode whose
//     digest does not match is reported), and its blob table must name
//     manifest layers with their sizes;
//   - filesystem (with a source): the source layers are applied from their
//     tar streams with the rules of containerd's applier: symlinked parents
//     followed within the root, whiteouts, hardlinks, type changes (apply.go;
//     code independent of the converter's merge) and compared with the Nydus
//     tree read through the RAFS reader,
//     every chunk verified: path set, type, mode, owner, size, rdev, symlink
//     target, xattrs, content digest, hardlink groups and mtime.
//
// No root and no mount are needed: the trust chain is manifest digest →
// layer digests → bootstrap → chunk digests. With Options.Mount (the CLI's
// check --mount) the filesystem rule reads the Nydus tree instead through a
// real read-only FUSE mount of the image (rafsfs over blobcache, mounted in
// the work directory and unmounted before Check returns), with lstat,
// readlink, the xattr calls and read only: what a container would see. That
// needs root and /dev/fuse; a chunk failing its digest reads as EIO there,
// and the file is reported unreadable.
package checker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sirupsen/logrus"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/registry"
)

// Rule names.
const (
	RuleManifest   = "manifest"
	RuleBootstrap  = "bootstrap"
	RuleFilesystem = "filesystem"
)

// Options configure a check. Target is required.
type Options struct {
	Target string // the Nydus image (imageref syntax)
	Source string // the image it was converted from; "" checks the target alone
	// Platform selects the manifest of an index; nil means the host's.
	Platform       *v1.Platform
	SourceRegistry registry.Options
	TargetRegistry registry.Options
	// IgnoreXattrs names xattrs left out of the comparison, such as
	// security.selinux labels a host adds.
	IgnoreXattrs []string
	// WorkDir receives the bootstrap and blobs while checking; a fresh
	// directory below it is removed at the end. Default: the OS temp dir.
	WorkDir string
	// Mount makes the filesystem rule read the Nydus tree through a FUSE
	// mount of the image rather than through the RAFS reader. It needs a
	// Source, root and /dev/fuse.
	Mount bool
	// Logger receives, with Mount, the cause of every EIO the mount returns
	// (such as a chunk failing its digest) as a warning. Nil discards (see
	// internal/logs).
	Logger logrus.FieldLogger
	// TargetBackend, when set, holds the target's blobs (an image converted
	// in storage-backend mode, whose manifest lists only the bootstrap
	// layer): the bootstrap's blob table is read from it by blob id.
	TargetBackend backend.Backend
}

// Problem is one difference or defect.
type Problem struct {
	Rule    string `json:"rule"`
	Path    string `json:"path,omitempty"`
	Field   string `json:"field,omitempty"`
	Want    string `json:"want,omitempty"`
	Got     string `json:"got,omitempty"`
	Message string `json:"message,omitempty"`
}

// String formats p for a terminal.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Rule)
	if p.Path != "" {
		b.WriteString(": " + p.Path)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, ": %s: want %s, got %s", p.Field, p.Want, p.Got)
	}
	if p.Message != "" {
		b.WriteString(": " + p.Message)
	}
	return b.String()
}

// Report is the result of a check; OK is true when no rule found a problem.
type Report struct {
	Target   string    `json:"target"`
	Source   string    `json:"source,omitempty"`
	Platform string    `json:"platform,omitempty"` // of the target image checked, as its index or config names it
	Rules    []string  `json:"rules_run"`
	Files    int       `json:"files_compared"`
	Mounted  bool      `json:"mounted"` // the filesystem rule read a FUSE mount of the image
	Problems []Problem `json:"problems"`
	OK       bool      `json:"ok"`
}

// Check runs the rules. The error is for failures to check at all (an image
// that cannot be fetched, a mount that cannot be made); differences and
// defects go into the report.
func Check(ctx context.Context, opts Options) (*Report, error) {
	if opts.Mount {
		if opts.Source == "" {
			return nil, errors.New("--mount needs --source: it applies to the filesystem rule, which compares with the source")
		}
		if err := checkMountable(); err != nil {
			return nil, err
		}
	}
	rep := &Report{Target: opts.Target, Source: opts.Source, Problems: []Problem{}}
	work, err := os.MkdirTemp(opts.WorkDir, "nydusify-check-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(work) // last: readMounted has unmounted by then

	target, err := imageref.OpenImage(ctx, opts.Target, opts.TargetRegistry, opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	if p := target.Platform; p.OS != "" {
		rep.Platform = p.String()
	}
	var source *imageref.PlatformImage
	if opts.Source != "" {
		if source, err = imageref.OpenImage(ctx, opts.Source, opts.SourceRegistry, opts.Platform); err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
	}
	problem := func(rule, format string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Rule: rule, Message: fmt.Sprintf(format, args...)})
	}

	rep.Rules = append(rep.Rules, RuleManifest)
	layers, err := target.Image.Layers()
	if err != nil {
		return nil, fmt.Errorf("target layers: %w", err)
	}
	if !checkManifest(target, source, layers, problem) {
		// Not a Nydus image at all: one problem that says so, rather than
		// one per layer and a bootstrap that cannot be found.
		return rep, nil
	}

	rep.Rules = append(rep.Rules, RuleBootstrap)
	if len(layers) == 0 {
		rep.OK = false
		return rep, nil
	}
	var files closers
	defer files.close()
	img, blobs, err := loadBootstrap(ctx, work, retrying(ctx, layers, opts.TargetRegistry), opts.TargetBackend, &files, problem)
	if err != nil {
		return nil, err
	}
	if img != nil && source != nil {
		rep.Rules = append(rep.Rules, RuleFilesystem)
		srcLayers, err := source.Image.Layers()
		if err != nil {
			return nil, fmt.Errorf("source layers: %w", err)
		}
		want, err := flatten(ctx, retrying(ctx, srcLayers, opts.SourceRegistry))
		if err != nil {
			return nil, err
		}
		var got map[string]*file
		var unreadable map[string]string
		switch {
		case !opts.Mount:
			if got, unreadable, err = readRafs(ctx, img); err != nil {
				problem(RuleBootstrap, "walking the tree: %v", err)
			}
		case slices.Contains(blobs, nil):
			problem(RuleFilesystem, "not compared: the image cannot be mounted without all its blobs (see the bootstrap problems)")
		default:
			rep.Mounted = true
			if got, unreadable, err = readMounted(ctx, work, opts.Logger); err != nil {
				return nil, fmt.Errorf("reading the image through a FUSE mount: %w", err)
			}
		}
		if got != nil {
			ignore := map[string]bool{}
			for _, x := range opts.IgnoreXattrs {
				ignore[x] = true
			}
			rep.Files = len(want)
			for _, p := range sortedKeys(unreadable) {
				rep.Problems = append(rep.Problems, Problem{Rule: RuleFilesystem, Path: p, Message: "cannot read " + unreadable[p]})
			}
			rep.Problems = append(rep.Problems, compareTrees(want, got, ignore)...)
		}
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// retrying makes the layers' downloads survive a registry cutting them off
// midway, under the registry options' retry policy.
func retrying(ctx context.Context, layers []v1.Layer, o registry.Options) []v1.Layer {
	out := make([]v1.Layer, len(layers))
	for i, l := range layers {
		out[i] = registry.RetryingLayer(ctx, l, o.Policy())
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkManifest applies the manifest rule. It returns false, having
// reported it, when no layer of the target is a Nydus layer at all.
func checkManifest(target, source *imageref.PlatformImage, layers []v1.Layer, problem func(string, string, ...any)) bool {
	m, err := target.Image.Manifest()
	if err != nil {
		problem(RuleManifest, "reading the manifest: %v", err)
		return true
	}
	cfg, err := target.Image.ConfigFile()
	if err != nil {
		problem(RuleManifest, "reading the config: %v", err)
		return true
	}
	if len(m.Layers) == 0 {
		problem(RuleManifest, "the manifest has no layers")
		return true
	}
	if !slices.ContainsFunc(m.Layers, func(l v1.Descriptor) bool {
		return l.MediaType == packer.MediaTypeNydusBlob || l.Annotations[packer.AnnotationNydusBlob] == "true" ||
			l.Annotations[packer.AnnotationNydusBootstrap] == "true"
	}) {
		problem(RuleManifest, "not a Nydus image: none of its %d layers is a Nydus blob or bootstrap layer (convert it with nydusify convert, and check the result)", len(m.Layers))
		return false
	}
	last := m.Layers[len(m.Layers)-1]
	if last.Annotations[packer.AnnotationNydusBootstrap] != "true" {
		problem(RuleManifest, "last layer %s lacks %s=true", last.Digest, packer.AnnotationNydusBootstrap)
	}
	if !strings.Contains(string(last.MediaType), "gzip") {
		problem(RuleManifest, "bootstrap layer media type %s is not a gzip layer", last.MediaType)
	}
	for _, l := range m.Layers[:len(m.Layers)-1] {
		if l.MediaType != packer.MediaTypeNydusBlob || l.Annotations[packer.AnnotationNydusBlob] != "true" {
			problem(RuleManifest, "layer %s: media type %s, %s=%q; want a Nydus blob layer", l.Digest, l.MediaType,
				packer.AnnotationNydusBlob, l.Annotations[packer.AnnotationNydusBlob])
		}
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		problem(RuleManifest, "config lists %d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	if source != nil {
		scfg, err := source.Image.ConfigFile()
		if err != nil {
			problem(RuleManifest, "reading the source config: %v", err)
			return true
		}
		if !reflect.DeepEqual(scfg.Config, cfg.Config) {
			problem(RuleManifest, "runtime config differs from the source's (Env, Cmd, Entrypoint, User, Labels, ...)")
		}
	}
	return true
}

// loadBootstrap applies the bootstrap rule and opens the image with its
// blobs, taken from the manifest's layers or, when be is set, from be;
// blobs[i] is nil for a blob that could not be opened. It returns a nil
// image when the bootstrap cannot be used at all.
func loadBootstrap(ctx context.Context, work string, layers []v1.Layer, be backend.Backend, files *closers, problem func(string, string, ...any)) (*rafs.Image, []*rafs.BlobReader, error) {
	bootLayer := layers[len(layers)-1]
	bootPath := filepath.Join(work, bootstrapFile)
	diffID, err := packer.ExtractBootstrap(bootLayer, bootPath)
	if err != nil {
		problem(RuleBootstrap, "extracting %s: %v", packer.BootstrapName, err)
		return nil, nil, nil
	}
	if want, err := bootLayer.DiffID(); err == nil && want != diffID {
		problem(RuleManifest, "bootstrap layer diff_id %s, but its tar hashes to %s", want, diffID)
	}
	f, err := os.Open(bootPath)
	if err != nil {
		return nil, nil, err
	}
	*files = append(*files, f)
	st, _ := f.Stat()
	rd, err := rafs.Open(f, st.Size())
	if err != nil {
		problem(RuleBootstrap, "%v", err)
		return nil, nil, nil
	}
	if err := rd.Walk(func(p string, n *rafs.Node) error {
		switch n.Type() {
		case rafs.ModeReg:
			_, err := rd.Chunks(n)
			return err
		case rafs.ModeLnk:
			_, err := rd.Readlink(n)
			return err
		}
		return nil
	}); err != nil {
		problem(RuleBootstrap, "walking the tree: %v", err)
		return nil, nil, nil
	}
	if rd.Version() == 5 {
		// A v5 bootstrap is a Merkle tree: every inode digest must be
		// what its chunks, target or children recompute to (§4).
		m, err := rd.VerifyMerkle()
		if err != nil {
			return nil, nil, err
		}
		for _, x := range m.Mismatches {
			problem(RuleBootstrap, "%s: inode digest %x does not match its content (%x)", x.Path, x.Stored[:8], x.Computed[:8])
		}
	}
	byDigest := map[v1.Hash]v1.Layer{}
	for _, l := range layers[:len(layers)-1] {
		if d, err := l.Digest(); err == nil {
			byDigest[d] = l
		}
	}
	// The image reads each blob from the file fetchBlob downloaded it to,
	// and verifies it against the bootstrap (which the manifest vouches
	// for), never against the blob's own digest array.
	paths := make([]string, len(rd.Blobs))
	img, err := rafs.NewImage(rd, rafs.BlobOpenerFunc(func(i int, e rafs.BlobEntry) (io.ReaderAt, int64, error) {
		if paths[i] == "" {
			return nil, 0, errors.New("not downloaded (see the bootstrap problems)")
		}
		f, err := os.Open(paths[i])
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}))
	if err != nil {
		return nil, nil, err
	}
	*files = append(*files, img)
	blobs := make([]*rafs.BlobReader, len(rd.Blobs))
	for i, e := range rd.Blobs {
		var path string
		var copyErr error
		if be != nil {
			path, copyErr = fetchBackendBlob(ctx, work, be, e)
		} else {
			// A blob id is the hex sha256 of the blob, its layer's digest.
			l, ok := byDigest[v1.Hash{Algorithm: "sha256", Hex: e.BlobID}]
			if !ok {
				where := ""
				if len(layers) == 1 {
					// Only the bootstrap layer: upstream's storage-backend layout.
					where = " (the image holds only its bootstrap layer, so its blobs are in a storage backend: give --target-backend-type and --target-backend-config)"
				}
				problem(RuleBootstrap, "blob %d (%s) of the blob table is not a layer of the manifest%s", i, e.BlobID, where)
				continue
			}
			if size, err := l.Size(); err == nil && uint64(size) != e.CompressedSize {
				problem(RuleBootstrap, "blob %s: %d bytes in the blob table, %d in the manifest", e.BlobID, e.CompressedSize, size)
			}
			rc, err := l.Compressed()
			if err != nil {
				problem(RuleBootstrap, "blob %s: %v", e.BlobID, err)
				continue
			}
			path, copyErr = saveBlob(work, rc, e)
			rc.Close()
		}
		if path == "" {
			problem(RuleBootstrap, "blob %s: %v", e.BlobID, copyErr)
			continue
		}
		paths[i] = path
		// A digest mismatch of the whole blob keeps the reader, so
		// per-chunk checks can still name the files the damage reaches.
		br, err := img.Blob(i)
		switch {
		case err != nil:
			problem(RuleBootstrap, "blob %s: %v", e.BlobID, errors.Join(copyErr, err))
		case copyErr != nil:
			problem(RuleBootstrap, "blob %s: %v (files reading from it are checked chunk by chunk)", e.BlobID, copyErr)
		}
		blobs[i] = br
	}
	return img, blobs, nil
}

// fetchBackendBlob copies a blob out of a storage backend into work, after
// checking its size against the blob table, as saveBlob does.
func fetchBackendBlob(ctx context.Context, work string, be backend.Backend, e rafs.BlobEntry) (string, error) {
	size, err := be.Size(ctx, e.BlobID)
	if err != nil {
		return "", err
	}
	if uint64(size) != e.CompressedSize {
		return "", fmt.Errorf("%d bytes in the backend, %d in the blob table", size, e.CompressedSize)
	}
	return saveBlob(work, io.NewSectionReader(backend.ReaderAt(ctx, be, e.BlobID), 0, size), e)
}

// saveBlob writes a blob's bytes into work and returns its path, with an
// error if the copy failed (path "" when nothing usable was written) or the
// content does not hash to the blob id.
func saveBlob(work string, r io.Reader, e rafs.BlobEntry) (string, error) {
	path := filepath.Join(work, e.BlobID)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	// Large reads: from a backend, each read is one ranged request.
	_, copyErr := io.CopyBuffer(io.MultiWriter(f, h), r, make([]byte, 4<<20))
	f.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != e.BlobID && copyErr == nil {
		copyErr = fmt.Errorf("content hashes to sha256:%s", got)
	}
	return path, copyErr
}

// bootstrapFile is where, in the work directory, the bootstrap is kept.
const bootstrapFile = "image.boot"

// closers closes the files a check opened, once it is done with them.
type closers []io.Closer

func (c closers) close() {
	for _, f := range c {
		f.Close()
	}
}
