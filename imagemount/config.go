package imagemount

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/nydus-go/nydusify/backend"
)

// Config is what a mount takes from nydusd's v1 JSON configuration
// (docs/nydusd-config.md); DefaultConfig gives the values used
// when no file is given.
type Config struct {
	Backend BackendConfig
	// CacheDir holds the chunk cache (device.cache.config.work_dir); ""
	// means a temporary directory removed at unmount.
	CacheDir string
	// Xattrs shows extended attributes (enable_xattr).
	Xattrs bool
	// Amplify is how many compressed bytes one backend request may cover
	// (amplify_io); 0 fetches one chunk per request.
	Amplify int64
	// Prefetch fills the cache in the background (fs_prefetch).
	Prefetch PrefetchConfig
	// VerifyMetadata checks a RAFS v5 bootstrap's digest chain as inodes
	// are first reached (digest_validate); a mismatch answers EIO. A v6
	// bootstrap has no inode digests: it is noted in the log and ignored
	// (chunks are always verified).
	VerifyMetadata bool
}

// PrefetchConfig is fs_prefetch.
type PrefetchConfig struct {
	Enable bool
	// Workers bounds the backend requests in flight (threads_count).
	Workers int
	// All prefetches every file when the bootstrap has no prefetch table
	// (prefetch_all).
	All bool
}

// BackendConfig is device.backend: where blobs are read from.
type BackendConfig struct {
	// Type is "localfs", "registry" or "s3".
	Type string
	// Dir holds blobs named by id (localfs).
	Dir string
	// Scheme ("https" or "http"), Host and Repo locate a registry
	// repository; Auth is base64 "user:password", Token a bearer token;
	// without either the docker config's credentials are used.
	Scheme, Host, Repo, Auth, Token string
	// SkipVerify skips TLS certificate verification.
	SkipVerify bool
	// TimeoutSeconds bounds each registry request; 0 means the backend's
	// default.
	TimeoutSeconds int
	// Attempts is how many times a request is tried in all: nydusd's
	// retry_limit plus one. 0 means our default policy (retry.Default).
	Attempts int
	// S3 is the bucket of an s3 backend (its Timeout and Retry are set
	// from TimeoutSeconds and Attempts by NewBackend).
	S3 backend.S3Config
}

// DefaultConfig returns the settings of a mount without a configuration
// file: xattrs shown, upstream's default amplification and prefetch workers.
func DefaultConfig() Config {
	return Config{Xattrs: true, Amplify: 1 << 20, Prefetch: PrefetchConfig{Workers: 8, All: true}}
}

// ParseConfig reads a nydusd v1 JSON configuration. Keys nydusd does not
// know are errors, naming their path; keys it knows whose feature a mount
// here lacks are errors when ignoring them would change what the mount
// serves or where it reads from, and notes (returned for the log) when they
// only tune or trace. Absent keys take nydusd's defaults, so enable_xattr
// must be true for xattrs to show, as with nydusd.
func ParseConfig(data []byte) (Config, []string, error) {
	c := DefaultConfig()
	c.Xattrs = false // nydusd's default
	p := &parser{}
	root, err := p.object("", data)
	if err != nil {
		return c, nil, err
	}
	if dev := root.object("device"); dev != nil {
		dev.note("id", "ignored")
		if v := dev.raw("external_backends"); v != nil && !isEmpty(v) {
			p.fail("device.external_backends: external backends are not supported")
		}
		if be := dev.object("backend"); be != nil {
			typ := be.str("type")
			if cfg := be.raw("config"); cfg != nil {
				c.Backend = p.backend(typ, "device.backend.config", cfg)
			} else {
				p.fail("device.backend.config is missing")
			}
			be.done()
		} else {
			p.fail("device.backend is missing")
		}
		if cache := dev.object("cache"); cache != nil {
			c.CacheDir = p.cache(cache)
		}
		dev.done()
	} else {
		p.fail("device is missing")
	}
	switch mode := root.str("mode"); mode {
	case "", "direct", "cached":
	default:
		p.fail(`mode %q: want "direct" or "cached"`, mode)
	}
	if root.has("digest_validate") {
		if c.VerifyMetadata = root.boolean("digest_validate"); !c.VerifyMetadata {
			p.notef("digest_validate false: every chunk is still verified against its digest when fetched")
		}
	}
	if root.has("enable_xattr") {
		c.Xattrs = root.boolean("enable_xattr")
	}
	for _, k := range []string{"iostats_files", "access_pattern", "latest_read_files"} {
		if root.boolean(k) {
			p.notef("%s: not supported, ignored", k)
		}
	}
	if root.has("amplify_io") {
		if c.Amplify = root.integer("amplify_io"); c.Amplify < 0 && p.err == nil {
			p.fail("amplify_io %d: want 0 or more bytes", c.Amplify)
		}
	}
	if fp := root.object("fs_prefetch"); fp != nil {
		c.Prefetch = p.prefetch(fp, c.Prefetch)
	}
	root.done()
	return c, p.notes, p.err
}

// ParseBackendConfig reads the "config" object of a backend of type typ, as
// given to --backend-config.
func ParseBackendConfig(typ string, data []byte) (BackendConfig, []string, error) {
	p := &parser{}
	b := p.backend(typ, "backend config", data)
	return b, p.notes, p.err
}

func (p *parser) backend(typ, path string, data json.RawMessage) BackendConfig {
	b := BackendConfig{Type: typ}
	o, err := p.object(path, data)
	if err != nil {
		p.fail("%v", err)
		return b
	}
	switch typ {
	case "localfs":
		b.Dir = o.str("dir")
		if o.str("blob_file") != "" {
			p.fail(`%s.blob_file: not supported; put the blob in a directory and set "dir"`, path)
		}
		if v := o.raw("alt_dirs"); v != nil && !isEmpty(v) {
			p.fail("%s.alt_dirs: not supported", path)
		}
		if b.Dir == "" && p.err == nil {
			p.fail(`%s: localfs needs "dir"`, path)
		}
	case "registry":
		b.Scheme, b.Host, b.Repo = o.str("scheme"), o.str("host"), o.str("repo")
		b.Auth, b.Token = o.str("auth"), o.str("registry_token")
		b.SkipVerify = o.boolean("skip_verify")
		p.connection(o, path, &b)
		switch b.Scheme {
		case "", "https", "http":
		default:
			p.fail(`%s.scheme %q: want "https" or "http"`, path, b.Scheme)
		}
		if (b.Host == "" || b.Repo == "") && p.err == nil {
			p.fail(`%s: registry needs "host" and "repo"`, path)
		}
		for _, k := range []string{"connect_timeout", "proxy", "mirrors", "ca_cert_files",
			"blob_url_scheme", "blob_redirected_host"} {
			o.note(k, "not supported, ignored")
		}
	case "s3":
		b.S3 = backend.S3Config{
			Endpoint: o.str("endpoint"), Scheme: o.str("scheme"), Region: o.str("region"),
			Bucket: o.str("bucket_name"), AccessKeyID: o.str("access_key_id"),
			SecretAccessKey: backend.Secret(o.str("access_key_secret")),
			ObjectPrefix:    o.str("object_prefix"), MetaPrefix: o.str("meta_prefix"),
			SkipVerify: o.boolean("skip_verify"),
		}
		if o.has("path_style") {
			b.S3.VirtualHosted = !o.boolean("path_style")
		}
		p.connection(o, path, &b)
		switch b.S3.Scheme {
		case "", "https", "http":
		default:
			p.fail(`%s.scheme %q: want "https" or "http"`, path, b.S3.Scheme)
		}
		if b.S3.Bucket == "" && p.err == nil {
			p.fail(`%s: s3 needs "bucket_name"`, path)
		}
		if (b.S3.AccessKeyID == "") != (b.S3.SecretAccessKey == "") && p.err == nil {
			p.fail(`%s: give both "access_key_id" and "access_key_secret", or neither to use the AWS credential chain`, path)
		}
		for _, k := range []string{"connect_timeout", "proxy", "mirrors"} {
			o.note(k, "not supported, ignored")
		}
	case "oss", "http-proxy":
		p.fail("backend type %q is not supported yet (localfs, registry, s3)", typ)
		return b
	case "":
		p.fail("backend type is missing (localfs, registry or s3)")
		return b
	default:
		p.fail("backend type %q is unknown (localfs, registry or s3)", typ)
		return b
	}
	o.done()
	return b
}

// connection reads the keys nydusd's network backends share: timeout and
// retry_limit.
func (p *parser) connection(o *object, path string, b *BackendConfig) {
	if b.TimeoutSeconds = int(o.integer("timeout")); b.TimeoutSeconds < 0 && p.err == nil {
		p.fail("%s.timeout %d: want 0 (the default) or more seconds", path, b.TimeoutSeconds)
	}
	if o.raw("retry_limit") != nil {
		n := int(o.integer("retry_limit"))
		if n < 0 || n > 100 {
			p.fail("%s.retry_limit %d: want 0 to 100", path, n)
		}
		b.Attempts = n + 1
	}
}

// cache reads device.cache and returns the cache directory.
func (p *parser) cache(o *object) string {
	typ := o.str("type")
	var dir string
	cfg := o.object("config")
	switch typ {
	case "blobcache", "filecache":
		if cfg != nil {
			dir = cfg.str("work_dir")
			cfg.note("disable_indexed_map", "ignored (the chunk map is always per chunk)")
			if cfg.boolean("enable_encryption") || cfg.boolean("enable_convergent_encryption") {
				p.fail("device.cache.config: cache encryption is not supported")
			}
			cfg.note("encryption_key", "ignored")
		}
		if dir == "" {
			p.fail("device.cache.config.work_dir is required for a %s cache", typ)
		}
	case "", "dummycache", "none":
		p.notef("device.cache.type %q: chunks are still cached, in a temporary directory removed at unmount", typ)
	case "fscache":
		p.fail(`device.cache.type "fscache" needs the kernel's on-demand mode; use "blobcache"`)
	default:
		p.fail("device.cache.type %q is unknown (blobcache, filecache, dummycache)", typ)
	}
	if cfg != nil {
		cfg.done()
	}
	if o.boolean("compressed") {
		p.notef("device.cache.compressed: the cache always holds uncompressed chunks")
	}
	o.note("validate", "ignored: chunks are verified when fetched")
	o.note("prefetch_config", "ignored: use fs_prefetch")
	o.done()
	return dir
}

func (p *parser) prefetch(o *object, c PrefetchConfig) PrefetchConfig {
	c.Enable = o.boolean("enable")
	if o.has("threads_count") {
		if c.Workers = int(o.integer("threads_count")); c.Workers < 1 && p.err == nil {
			p.fail("fs_prefetch.threads_count %d: want at least 1", c.Workers)
		}
	}
	if o.has("prefetch_all") {
		c.All = o.boolean("prefetch_all")
	}
	if o.integer("bandwidth_rate") != 0 {
		p.notef("fs_prefetch.bandwidth_rate: not supported, prefetch is not rate limited")
	}
	o.note("merging_size", "ignored: prefetch requests use amplify_io")
	o.note("stream_prefetch", "ignored")
	o.done()
	return c
}

// parser walks a JSON document, remembering the first error and the notes.
type parser struct {
	err   error
	notes []string
}

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("nydusd config: "+format, args...)
	}
}

func (p *parser) notef(format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// object is one JSON object being read; done reports keys nobody asked for.
type object struct {
	p    *parser
	path string
	m    map[string]json.RawMessage
	used map[string]bool
}

func (p *parser) object(path string, data []byte) (*object, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil || m == nil {
		where := path
		if where == "" {
			where = "the document"
		}
		if err == nil {
			err = fmt.Errorf("null")
		}
		return nil, fmt.Errorf("nydusd config: %s: want a JSON object: %w", where, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("nydusd config: trailing data after the JSON object")
	}
	return &object{p: p, path: path, m: m, used: map[string]bool{}}, nil
}

func (o *object) key(k string) string {
	if o.path == "" {
		return k
	}
	return o.path + "." + k
}

func (o *object) has(k string) bool { _, ok := o.m[k]; return ok }

func (o *object) raw(k string) json.RawMessage {
	o.used[k] = true
	v, ok := o.m[k]
	if !ok || string(v) == "null" {
		return nil
	}
	return v
}

func (o *object) decode(k string, dst any, want string) {
	if v := o.raw(k); v != nil {
		if err := json.Unmarshal(v, dst); err != nil {
			o.p.fail("%s: want %s, got %s", o.key(k), want, v)
		}
	}
}

func (o *object) str(k string) string {
	var s string
	o.decode(k, &s, "a string")
	return s
}

func (o *object) boolean(k string) bool {
	var b bool
	o.decode(k, &b, "true or false")
	return b
}

func (o *object) integer(k string) int64 {
	var n int64
	o.decode(k, &n, "an integer")
	return n
}

func (o *object) object(k string) *object {
	v := o.raw(k)
	if v == nil {
		return nil
	}
	sub, err := o.p.object(o.key(k), v)
	if err != nil {
		o.p.fail("%s: want a JSON object", o.key(k))
		return nil
	}
	return sub
}

// note marks k as known and, when it is set, records why it has no effect.
func (o *object) note(k, why string) {
	if v := o.raw(k); v != nil && !isEmpty(v) {
		o.p.notef("%s: %s", o.key(k), why)
	}
}

// done fails on the keys of o that were never read.
func (o *object) done() {
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, o.key(k))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		o.p.fail("unknown key(s) %s", strings.Join(quoteAll(unknown), ", "))
	}
}

func quoteAll(ss []string) []string {
	out := slices.Clone(ss)
	for i, s := range out {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// isEmpty reports whether a JSON value is a zero value: false, 0, "", [],
// {} or null.
func isEmpty(v json.RawMessage) bool {
	switch strings.TrimSpace(string(v)) {
	case "false", "0", `""`, "[]", "{}", "null":
		return true
	}
	return false
}
