package packer

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FuzzRewriteConfig feeds a source image config from the fuzzer. What is
// accepted must come back as upstream rewrites it: every top-level field but
// rootfs and history unchanged (unknown fields included), rootfs.diff_ids the
// given ones, and history the old entries plus the Nydus bootstrap entry.
func FuzzRewriteConfig(f *testing.F) {
	f.Add([]byte(`{"architecture":"amd64","os":"linux","config":{"Env":["A=1&&b<c>"]},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x"}],"x-unknown":[1,2.5e3,null]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"history":{}}`))
	diffIDs := []v1.Hash{{Algorithm: "sha256", Hex: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := rewriteConfig(raw, diffIDs, false)
		if err != nil {
			return
		}
		// Numbers are compared as written: JSON allows 7E777, which no
		// float64 holds, and an unknown field must pass through as it is.
		var in, got map[string]any
		if err := decodeNumbers(raw, &in); err != nil {
			t.Fatalf("accepted a config that is not a JSON object: %v", err)
		}
		if err := decodeNumbers(out, &got); err != nil {
			t.Fatalf("rewritten config is not JSON: %v\n%s", err, out)
		}
		for k, v := range in {
			if k == "rootfs" || k == "history" {
				continue
			}
			if !reflect.DeepEqual(got[k], v) {
				t.Fatalf("field %q changed: %v -> %v", k, v, got[k])
			}
		}
		var cfg v1.ConfigFile
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("rewritten config does not decode as an image config: %v", err)
		}
		if !reflect.DeepEqual(cfg.RootFS.DiffIDs, diffIDs) || cfg.RootFS.Type != "layers" {
			t.Fatalf("rootfs %+v", cfg.RootFS)
		}
		var oldHistory []any
		if h, ok := in["history"]; ok {
			oldHistory, _ = h.([]any)
		}
		newHistory, _ := got["history"].([]any)
		if len(newHistory) != len(oldHistory)+1 || (len(oldHistory) > 0 && !reflect.DeepEqual(newHistory[:len(oldHistory)], oldHistory)) {
			t.Fatalf("history %v from %v", newHistory, oldHistory)
		}
		last, _ := newHistory[len(newHistory)-1].(map[string]any)
		if last["created_by"] != historyCreatedBy || last["comment"] != historyComment {
			t.Fatalf("appended history entry %v", last)
		}
	})
}

// decodeNumbers decodes JSON into v keeping numbers as json.Number.
func decodeNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}
