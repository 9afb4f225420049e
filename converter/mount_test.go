package converter_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/imagemount"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/mountcheck/mounttest"
	"github.com/nydus-go/nydusify/packer"
	"github.com/nydus-go/nydusify/rafs"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/registry"
)

// mountTarget mounts a Nydus image lazily from the registry, with a fresh
// cache, and unmounts it when the test ends. Causes of EIO go to logger.
func mountTarget(t *testing.T, target string, logger logrus.FieldLogger) string {
	t.Helper()
	m := mounttest.FUSE(t, imagemount.Options{
		Target: target, Registry: registry.Options{PlainHTTP: true},
		Config: imagemount.DefaultConfig(), Logger: logger,
	})
	if b := m.Image().Info().Backend; !strings.HasPrefix(b, "registry:") {
		t.Errorf("backend %s, want the target's registry", b)
	}
	return m.Dir()
}

// TestMountConvertedImage converts the three-layer source image into a real
// registry (Debian's docker-registry) with every compressor, mounts each
// result with FUSE, fetching chunks from the registry, and requires the
// mounted tree to equal umoci's flattening of the source.
func TestMountConvertedImage(t *testing.T) {
	testenv.RequireFUSE(t)
	host := testenv.StartRegistry(t)
	srcRef, _ := name.ParseReference(host+"/src/mount:v1", name.Insecure)
	if err := remote.Write(srcRef, sourceImage(t, true, true)); err != nil {
		t.Fatal(err)
	}
	want := fx.UmociUnpack(t, sourceImage(t, true, false))
	reg := registry.Options{PlainHTTP: true}
	for _, c := range []rafs.Compressor{rafs.CompressNone, rafs.CompressLZ4Block, rafs.CompressZstd} {
		t.Run(c.String(), func(t *testing.T) {
			target := host + "/nydus/mount:" + c.String()
			if _, err := converter.Convert(context.Background(), converter.Options{
				Source: srcRef.String(), Target: target, Build: rafsbuild.Options{Compressor: c},
				SourceRegistry: reg, TargetRegistry: reg,
			}); err != nil {
				t.Fatal(err)
			}
			requireSame(t, want, mountTarget(t, target, nil))
		})
	}
}

// TestFlippedBlobByte converts an image into a real registry, flips one
// byte of the chunk holding /etc/hostname in the registry's storage, and
// requires that reading that file through the mount fails with EIO while
// its neighbours read, and that check fails naming the file.
func TestFlippedBlobByte(t *testing.T) {
	testenv.RequireFUSE(t)
	host, storage := testenv.StartRegistryStorage(t)
	srcRef, _ := name.ParseReference(host+"/src/flip:v1", name.Insecure)
	if err := remote.Write(srcRef, sourceImage(t, true, false)); err != nil {
		t.Fatal(err)
	}
	target := host + "/nydus/flip:v1"
	reg := registry.Options{PlainHTTP: true}
	if _, err := converter.Convert(context.Background(), converter.Options{
		Source: srcRef.String(), Target: target, Build: rafsbuild.Options{Compressor: rafs.CompressZstd},
		SourceRegistry: reg, TargetRegistry: reg,
	}); err != nil {
		t.Fatal(err)
	}

	// Find the chunk of /etc/hostname in the bootstrap and its blob.
	tref, _ := name.ParseReference(target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	boot := filepath.Join(t.TempDir(), "image.boot")
	if _, err := packer.ExtractBootstrap(layers[len(layers)-1], boot); err != nil {
		t.Fatal(err)
	}
	bf, err := os.Open(boot)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	st, _ := bf.Stat()
	rd, err := rafs.Open(bf, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	n, err := rd.Lookup("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := rd.Chunks(n)
	if err != nil || len(addrs) != 1 {
		t.Fatalf("chunks of /etc/hostname: %v, %v", addrs, err)
	}
	e := rd.Blobs[addrs[0].BlobIndex]
	blobPath := filepath.Join(storage, "docker/registry/v2/blobs/sha256", e.BlobID[:2], e.BlobID, "data")
	blob, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	rimg, err := rafs.NewImage(rd, rafs.BlobOpenerFunc(func(int, rafs.BlobEntry) (io.ReaderAt, int64, error) {
		return bytes.NewReader(blob), int64(len(blob)), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	br, err := rimg.Blob(int(addrs[0].BlobIndex))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := br.Chunk(addrs[0].CIIndex)
	if err != nil {
		t.Fatal(err)
	}
	blob[ch.CompressedOffset+uint64(ch.CompressedSize)/2] ^= 0x40
	if err := os.WriteFile(blobPath, blob, 0o644); err != nil {
		t.Fatal(err)
	}

	logFile, err := os.Create(filepath.Join(t.TempDir(), "mount.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	mnt := mountTarget(t, target, logs.New(logFile))
	if _, err := os.ReadFile(filepath.Join(mnt, "etc/hostname")); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the damaged file: %v, want EIO", err)
	}
	if logged, _ := os.ReadFile(logFile.Name()); !strings.Contains(string(logged), "chunk digest mismatch") {
		t.Errorf("the mount log does not give the cause of the EIO:\n%s", logged)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "etc/new")); err != nil || string(got) != "layer 3" {
		t.Errorf("reading an intact file: %q, %v", got, err)
	}

	rep, err := checker.Check(context.Background(), checker.Options{
		Target: target, Source: srcRef.String(), SourceRegistry: reg, TargetRegistry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, p := range rep.Problems {
		named = named || p.Path == "/etc/hostname"
	}
	if rep.OK || !named {
		t.Errorf("check of the damaged image: ok %v, problems %v; want /etc/hostname named", rep.OK, rep.Problems)
	}
}
