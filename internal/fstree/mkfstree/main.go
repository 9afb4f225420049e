// Command mkfstree writes the fstree sample tree into a directory, for the
// demo and for manual experiments: mkfstree [-root] [-big] [-oci LAYOUT:TAG] DIR.
// With -oci it also packs the tree as a one-layer OCI image into an OCI
// image layout, the demo's source image.
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/internal/fstree"
)

func main() {
	var opts fstree.Options
	var oci string
	flag.BoolVar(&opts.Root, "root", false, "add devices, large uids, trusted.* and security.capability xattrs (needs root)")
	flag.BoolVar(&opts.Big, "big", false, "add a sparse 5 GiB file")
	flag.StringVar(&oci, "oci", "", "also write the tree as a one-layer image into this OCI layout, as LAYOUT:TAG")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkfstree [-root] [-big] [-oci LAYOUT:TAG] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	err := fstree.Make(dir, opts)
	if err == nil && oci != "" {
		err = writeImage(dir, oci)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkfstree:", err)
		os.Exit(1)
	}
}

// writeImage packs dir as a gzip layer (PAX tar with xattrs and devices)
// into an OCI layout at path:tag.
func writeImage(dir, ref string) error {
	path, tag, ok := strings.Cut(ref, ":")
	if !ok || path == "" || tag == "" {
		return fmt.Errorf("-oci wants LAYOUT:TAG, got %q", ref)
	}
	opener := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTar(dir, pw)) }()
		return pr, nil
	}
	layer, err := tarball.LayerFromOpener(opener, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	lp, err := layout.Write(path, empty.Index)
	if err != nil {
		return err
	}
	return lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}

func writeTar(root string, w io.Writer) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		h.Name, h.Format = filepath.ToSlash(rel), tar.FormatPAX
		// ggcr reads the layer twice (digest, then upload): leave out the
		// access and change times, which reading itself updates.
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if fi.IsDir() {
			h.Name += "/"
		}
		st := fi.Sys().(*syscall.Stat_t)
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[key] = h.Name
			}
		}
		if names, err := xattrNames(p); err == nil {
			for _, n := range names {
				v := make([]byte, 64<<10)
				if sz, err := unix.Lgetxattr(p, n, v); err == nil {
					if h.PAXRecords == nil {
						h.PAXRecords = map[string]string{}
					}
					h.PAXRecords["SCHILY.xattr."+n] = string(v[:sz])
				}
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func xattrNames(p string) ([]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00"), nil
}
