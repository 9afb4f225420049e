package layout_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"testing/fstest"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nydus-go/nydusify/layout"
)

// fuzzLayout is a layout whose blobs are a valid image (config, one layer,
// manifest); only index.json comes from the fuzzer.
func fuzzLayout() (fstest.MapFS, []byte) {
	fsys := fstest.MapFS{}
	put := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		fsys["blobs/sha256/"+h] = &fstest.MapFile{Data: b}
		return "sha256:" + h, len(b)
	}
	layerDigest, layerSize := put([]byte("layer bytes"))
	cfgDigest, cfgSize := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + layerDigest + `"]}}`))
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgDigest, "size": cfgSize},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	})
	mDigest, mSize := put(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mDigest, "size": mSize,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": "t"}}},
	})
	fsys["oci-layout"] = &fstest.MapFile{Data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}
	return fsys, index
}

// FuzzOpenFS feeds index.json from the fuzzer. Whatever it says, Open must
// not panic, and what it accepts must be what the index promised: the raw
// manifest handed back hashes to the descriptor's digest and has its size,
// and an image's config and layers read back verified.
func FuzzOpenFS(f *testing.F) {
	fsys, index := fuzzLayout()
	f.Add(index, "t")
	f.Add(index, "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:`+
		"00"+string(bytes.Repeat([]byte("0"), 62))+`","size":2}]}`), "")
	f.Fuzz(func(t *testing.T, idx []byte, tag string) {
		m := fstest.MapFS{}
		for k, v := range fsys {
			m[k] = v
		}
		m["index.json"] = &fstest.MapFile{Data: idx}
		desc, art, err := layout.OpenFS(m, tag)
		if err != nil {
			return
		}
		raw, err := art.RawManifest()
		if err != nil {
			t.Fatalf("accepted, then RawManifest: %v", err)
		}
		if sum := sha256.Sum256(raw); desc.Digest.Algorithm != "sha256" || desc.Digest.Hex != hex.EncodeToString(sum[:]) || desc.Size != int64(len(raw)) {
			t.Fatalf("accepted a manifest that is not what the index promised: %v, %d bytes", desc.Digest, len(raw))
		}
		img, ok := art.(v1.Image)
		if !ok {
			return
		}
		if _, err := img.RawConfigFile(); err != nil {
			return // a config the manifest names wrongly fails on reading: fine
		}
		layers, err := img.Layers()
		if err != nil {
			return
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				continue
			}
			var b bytes.Buffer
			_, err = b.ReadFrom(rc)
			rc.Close()
			d, _ := l.Digest()
			if sum := sha256.Sum256(b.Bytes()); err == nil && hex.EncodeToString(sum[:]) != d.Hex {
				t.Fatalf("layer %v read back with other bytes and no error", d)
			}
		}
	})
}

// FuzzOpenManifest feeds the image manifest (and a config) from the
// fuzzer, with an index.json that names the manifest by its true digest, so
// the fuzzer reaches the manifest and config parsers. What is accepted must
// read back verified: the config hashes to what the manifest promises.
func FuzzOpenManifest(f *testing.F) {
	base, _ := fuzzLayout()
	for _, file := range base {
		if bytes.Contains(file.Data, []byte(`"layers"`)) {
			f.Add(file.Data, []byte(`{"os":"linux"}`))
		}
	}
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:x","size":-1},"layers":[{}]}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, manifest, config []byte) {
		m := fstest.MapFS{}
		for k, v := range base {
			m[k] = v
		}
		put := func(b []byte) (string, int) {
			sum := sha256.Sum256(b)
			h := hex.EncodeToString(sum[:])
			m["blobs/sha256/"+h] = &fstest.MapFile{Data: b}
			return "sha256:" + h, len(b)
		}
		put(config)
		d, n := put(manifest)
		idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": n}}})
		m["index.json"] = &fstest.MapFile{Data: idx}
		_, art, err := layout.OpenFS(m, "")
		if err != nil {
			return
		}
		img, ok := art.(v1.Image)
		if !ok {
			t.Fatalf("a manifest media type opened as %T", art)
		}
		mf, err := img.Manifest()
		if err != nil {
			return
		}
		raw, err := img.RawConfigFile()
		if err != nil {
			return
		}
		if sum := sha256.Sum256(raw); mf.Config.Digest.Hex != hex.EncodeToString(sum[:]) || int64(len(raw)) != mf.Config.Size {
			t.Fatalf("config read back does not match the manifest's descriptor %v", mf.Config.Digest)
		}
	})
}
