// Package treetar writes a directory tree as an OCI layer tar, for tests,
// the demo and the benchmark: PAX format in lexical walk order, owners,
// modes, nanosecond mtimes, xattrs (SCHILY.xattr), devices, symlinks and
// hardlinks, without access/change times, so the same tree always gives the
// same bytes (ggcr reads a layer twice: once for its digest, once to upload).
package treetar

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Write writes the tree under root to w as a tar stream; root itself is not
// an entry.
func Write(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		h, err := header(p, filepath.ToSlash(rel), d, links)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		// An empty file has no body to copy; not opening it lets a non-root
		// user pack files whose mode forbids reading (modes/0000 in fstree).
		if h.Typeflag != tar.TypeReg || h.Size == 0 {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func header(p, name string, d fs.DirEntry, links map[[2]uint64]string) (*tar.Header, error) {
	fi, err := d.Info()
	if err != nil {
		return nil, err
	}
	target := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = os.Readlink(p); err != nil {
			return nil, err
		}
	}
	h, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	h.Name, h.Format = name, tar.FormatPAX
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	h.Uname, h.Gname = "", ""
	if fi.IsDir() {
		h.Name += "/"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[key] = h.Name
			}
		}
	}
	xattrs, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	for k, v := range xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
	return h, nil
}

func readXattrs(p string) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		if err == unix.ENOTSUP {
			err = nil
		}
		return nil, err
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 64<<10)
		sz, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		out[name] = string(v[:sz])
	}
	return out, nil
}

// WriteGzipFile writes the tree under root as a gzip-compressed layer file
// at path.
func WriteGzipFile(path, root string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	if err := Write(zw, root); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// Image returns a one-layer OCI image (linux, the host's architecture)
// whose gzip layer is the tree under dir, streamed afresh on every read.
func Image(dir string) (v1.Image, error) {
	opener := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(Write(pw, dir)) }()
		return pr, nil
	}
	layer, err := tarball.LayerFromOpener(opener, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	return mutate.ConfigFile(img, cfg)
}

// WriteLayout writes Image(dir) into a new OCI image layout at layoutDir,
// tagged tag (org.opencontainers.image.ref.name).
func WriteLayout(dir, layoutDir, tag string) error {
	img, err := Image(dir)
	if err != nil {
		return err
	}
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return err
	}
	return lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}
