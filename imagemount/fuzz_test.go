package imagemount

import (
	"testing"
)

// FuzzParseConfig feeds nydusd JSON configurations from the fuzzer.
// ParseConfig must never panic, must give the same answer twice, and what it
// accepts must be usable as it stands: a known backend type with what that
// type needs, no negative amplification, at least one prefetch worker, a
// retry count in range, and a backend that NewBackend can build.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"device":{"backend":{"type":"localfs","config":{"dir":"/d"}},"cache":{"type":"blobcache","config":{"work_dir":"c"}}},"mode":"direct","digest_validate":true,"enable_xattr":true,"amplify_io":1048576,"fs_prefetch":{"enable":true,"threads_count":4,"prefetch_all":true}}`,
		`{"device":{"backend":{"type":"registry","config":{"scheme":"http","host":"127.0.0.1:5000","repo":"a/b","auth":"dXNlcjpwYXNz","timeout":5,"retry_limit":2}}}}`,
		`{"device":{"backend":{"type":"s3","config":{}}}}`,
		`{"device":{"backend":{"type":"registry","config":{"host":"h","repo":"r","retry_limit":-1}}},"amplify_io":-5}`,
		`{"fs_prefetch":{"threads_count":0}}`,
		`[]`, `null`, `{"device":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, notes, err := ParseConfig(data)
		c2, notes2, err2 := ParseConfig(data)
		if (err == nil) != (err2 == nil) || c != c2 || len(notes) != len(notes2) {
			t.Fatalf("two parses differ: %+v %v / %+v %v", c, err, c2, err2)
		}
		if err != nil {
			return
		}
		switch c.Backend.Type {
		case "localfs":
			if c.Backend.Dir == "" {
				t.Fatalf("accepted localfs without a dir")
			}
		case "registry":
			if c.Backend.Host == "" || c.Backend.Repo == "" {
				t.Fatalf("accepted a registry without host or repo: %+v", c.Backend)
			}
		case "":
		default:
			t.Fatalf("accepted backend type %q", c.Backend.Type)
		}
		if c.Amplify < 0 || c.Prefetch.Workers < 1 || c.Backend.Attempts < 0 || c.Backend.Attempts > 101 || c.Backend.TimeoutSeconds < 0 {
			t.Fatalf("accepted out-of-range values: %+v", c)
		}
		if c.Backend.Type != "" {
			if _, err := NewBackend(c.Backend); err != nil && c.Backend.Type == "localfs" {
				t.Fatalf("accepted a localfs backend NewBackend refuses: %v", err)
			}
		}
	})
}
