package packer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarLayer is a gzip layer of a tar holding files, in order, built by ggcr.
func tarLayer(t *testing.T, files ...[2]string) (v1.Layer, []byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o444, Size: int64(len(f[1])), Typeflag: tar.TypeReg})
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l, raw
}

func TestExtractBootstrap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bootstrap")
	l, raw := tarLayer(t, [2]string{"image/other", "x"}, [2]string{BootstrapName, "the bootstrap"})
	diffID, err := ExtractBootstrap(l, path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if want := (v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}); diffID != want {
		t.Errorf("diff_id %s, want %s", diffID, want)
	}
	if want, _ := l.DiffID(); diffID != want {
		t.Errorf("diff_id %s, ggcr computes %s", diffID, want)
	}
	if got, _ := os.ReadFile(path); string(got) != "the bootstrap" {
		t.Errorf("extracted %q", got)
	}

	// GNU tar and Python's tarfile pad the archive to 10240-byte records
	// after its end blocks; the diff_id is the hash of every byte.
	padded := append(append([]byte{}, raw...), make([]byte, 10240-len(raw)%10240)...)
	pl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(padded)), nil })
	if err != nil {
		t.Fatal(err)
	}
	if diffID, err = ExtractBootstrap(pl, path); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(padded); diffID.Hex != hex.EncodeToString(sum[:]) {
		t.Errorf("padded tar: diff_id %s, want sha256:%x", diffID, sum)
	}

	// A layer without a bootstrap leaves the previous file and no temporary one.
	l, _ = tarLayer(t, [2]string{"image/other", "x"})
	if _, err := ExtractBootstrap(l, path); err == nil || !strings.Contains(err.Error(), "no "+BootstrapName) {
		t.Errorf("layer without a bootstrap: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "the bootstrap" {
		t.Errorf("a failed extraction changed the file: %q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the bootstrap", len(ents))
	}
}
