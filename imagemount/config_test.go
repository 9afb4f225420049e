package imagemount

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nydus-go/nydusify/backend"
)

// docExample is the configuration docs/nydusd-config.md shows, as users have it.
const docExample = `{
  "device": {
    "backend": {"type": "localfs", "config": {"dir": "image-store"}},
    "cache": {"type": "blobcache", "config": {"work_dir": "cache"}}
  },
  "mode": "direct",
  "digest_validate": false,
  "iostats_files": false,
  "enable_xattr": true,
  "fs_prefetch": {"enable": false, "threads_count": 10}
}`

func TestParseConfigExample(t *testing.T) {
	c, notes, err := ParseConfig([]byte(docExample))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Backend:  BackendConfig{Type: "localfs", Dir: "image-store"},
		CacheDir: "cache", Xattrs: true, Amplify: 1 << 20,
		Prefetch: PrefetchConfig{Enable: false, Workers: 10, All: true},
	}
	if c != want {
		t.Errorf("ParseConfig =\n%+v\nwant\n%+v", c, want)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "digest_validate") {
		t.Errorf("notes = %q, want one about digest_validate", notes)
	}
}

func TestParseConfigRegistry(t *testing.T) {
	c, notes, err := ParseConfig([]byte(`{
	  "device": {
	    "id": "factory-1",
	    "backend": {"type": "registry", "config": {"scheme": "http", "host": "127.0.0.1:5000", "repo": "app",
	      "auth": "dXNlcjpwYXNz", "skip_verify": true, "timeout": 5, "retry_limit": 3,
	      "proxy": {"url": "http://p:65001", "fallback": true}}},
	    "cache": {"type": "dummycache"}
	  },
	  "mode": "cached", "amplify_io": 0, "iostats_files": true,
	  "fs_prefetch": {"enable": true, "threads_count": 2, "prefetch_all": false, "merging_size": 131072}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Backend: BackendConfig{Type: "registry", Scheme: "http", Host: "127.0.0.1:5000", Repo: "app",
			Auth: "dXNlcjpwYXNz", SkipVerify: true, TimeoutSeconds: 5, Attempts: 4},
		Amplify:  0,
		Prefetch: PrefetchConfig{Enable: true, Workers: 2, All: false},
	}
	if c != want {
		t.Errorf("ParseConfig =\n%+v\nwant\n%+v", c, want)
	}
	// id, proxy, dummycache, iostats_files, merging_size.
	joined := strings.Join(notes, "\n")
	for _, w := range []string{"device.id", "proxy", "dummycache", "iostats_files", "merging_size"} {
		if !strings.Contains(joined, w) {
			t.Errorf("no note about %s in:\n%s", w, joined)
		}
	}
	if _, err := NewBackend(c.Backend); err != nil {
		t.Errorf("NewBackend: %v", err)
	}
}

// TestParseConfigS3: nydusd's s3 backend keys (docs/storage-backends.md)
// land in the S3 config; timeout and retry_limit reach the client through
// NewBackend; the secret does not show when the config is printed.
func TestParseConfigS3(t *testing.T) {
	c, notes, err := ParseConfig([]byte(`{"device": {"backend": {"type": "s3", "config": {
	  "endpoint": "127.0.0.1:9000", "scheme": "http", "region": "eu-west-1", "bucket_name": "images",
	  "access_key_id": "AKID", "access_key_secret": "s3cr3t-value", "object_prefix": "blobs/",
	  "meta_prefix": "meta/", "skip_verify": true, "timeout": 7, "retry_limit": 2, "path_style": false,
	  "connect_timeout": 3}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := BackendConfig{Type: "s3", TimeoutSeconds: 7, Attempts: 3, S3: backend.S3Config{
		Endpoint: "127.0.0.1:9000", Scheme: "http", Region: "eu-west-1", Bucket: "images",
		AccessKeyID: "AKID", SecretAccessKey: "s3cr3t-value", ObjectPrefix: "blobs/", MetaPrefix: "meta/",
		SkipVerify: true, VirtualHosted: true}}
	if c.Backend != want {
		t.Errorf("backend =\n%+v\nwant\n%+v", c.Backend, want)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "connect_timeout") {
		t.Errorf("no note about connect_timeout in %q", notes)
	}
	if s := fmt.Sprintf("%+v", c); strings.Contains(s, "s3cr3t-value") {
		t.Errorf("the secret shows in %s", s)
	}
	be, err := NewBackend(c.Backend)
	if err != nil {
		t.Fatal(err)
	}
	if s := describe(be); s != "s3:http://127.0.0.1:9000/images/blobs/" {
		t.Errorf("backend described as %q", s)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"device": {"backend": {"type": "localfs", "config": {"dir": "d", "dri": "x"}}}}`, `"device.backend.config.dri"`},
		{`{"device": {"backend": {"type": "localfs", "config": {"dir": "d"}}}, "bogus": 1}`, `unknown key(s) "bogus"`},
		{`{"device": {"backend": {"type": "oss", "config": {"bucket_name": "b"}}}}`, `"oss" is not supported yet`},
		{`{"device": {"backend": {"type": "s3", "config": {"endpoint": "h"}}}}`, `s3 needs "bucket_name"`},
		{`{"device": {"backend": {"type": "s3", "config": {"bucket_name": "b", "access_key_id": "k"}}}}`, `give both "access_key_id" and "access_key_secret"`},
		{`{"device": {"backend": {"type": "s3", "config": {"bucket_name": "b", "scheme": "ftp"}}}}`, `scheme "ftp"`},
		{`{"device": {"backend": {"type": "s3", "config": {"bucket_name": "b", "bucket": "x"}}}}`, `unknown key(s) "device.backend.config.bucket"`},
		{`{"device": {"backend": {"type": "ftp", "config": {}}}}`, `"ftp" is unknown`},
		{`{"device": {"backend": {"type": "localfs", "config": {}}}}`, `localfs needs "dir"`},
		{`{"device": {"backend": {"type": "localfs", "config": {"blob_file": "/b"}}}}`, `blob_file: not supported`},
		{`{"device": {"backend": {"type": "registry", "config": {"host": "h"}}}}`, `needs "host" and "repo"`},
		{`{"device": {"backend": {"type": "registry", "config": {"host": "h", "repo": "r", "scheme": "ftp"}}}}`, `scheme "ftp"`},
		{`{"device": {"backend": {"type": "localfs", "config": {"dir": "d"}}, "cache": {"type": "fscache"}}}`, `fscache`},
		{`{"device": {"backend": {"type": "localfs", "config": {"dir": "d"}}, "cache": {"type": "blobcache"}}}`, `work_dir is required`},
		{`{"device": {"backend": {"type": "localfs", "config": {"dir": "d"}}}, "enable_xattr": "yes"}`, `enable_xattr: want true or false`},
		{`{"device": {"backend": {"type": "localfs", "config": {"dir": "d"}}}, "mode": "fast"}`, `mode "fast"`},
		{`{"device": {"backend": {"type": "localfs", "config": {"dir": "d"}}}, "fs_prefetch": {"threads_count": 0}}`, `threads_count 0`},
		{`{"mode": "direct"}`, `device is missing`},
		{`[1, 2]`, `want a JSON object`},
		{`{"device": {}} trailing`, `trailing data`},
	} {
		_, _, err := ParseConfig([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%s) = %v, want an error containing %q", tc.json, err, tc.want)
		}
	}
}

func TestParseBackendConfig(t *testing.T) {
	b, _, err := ParseBackendConfig("localfs", []byte(`{"dir": "/blobs"}`))
	if err != nil || b != (BackendConfig{Type: "localfs", Dir: "/blobs"}) {
		t.Errorf("ParseBackendConfig = %+v, %v", b, err)
	}
	if _, _, err := ParseBackendConfig("registry", []byte(`{"host": "h", "repo": "r", "extra": 1}`)); err == nil ||
		!strings.Contains(err.Error(), `"backend config.extra"`) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := NewBackend(BackendConfig{Type: "registry", Host: "h", Repo: "r", Auth: "not base64!"}); err == nil {
		t.Error("NewBackend accepted an auth that is not base64 user:password")
	}
}
