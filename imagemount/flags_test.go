package imagemount

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fileConfig sets every setting a flag can override, each to a value no
// default has.
const fileConfig = `{
  "device": {
    "backend": {"type": "localfs", "config": {"dir": "/from/file"}},
    "cache": {"type": "blobcache", "config": {"work_dir": "/file/cache"}}
  },
  "digest_validate": false,
  "enable_xattr": false,
  "amplify_io": 4096,
  "fs_prefetch": {"enable": true, "threads_count": 3, "prefetch_all": false}
}`

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagConfigPrecedence(t *testing.T) {
	file := writeTemp(t, "nydusd.json", fileConfig)
	beFile := writeTemp(t, "backend.json", `{"dir": "/from/backend-file"}`)
	localfs := Flag[string]{Value: "localfs"} // --backend-type's default, not given
	fromFile := Config{
		Backend:  BackendConfig{Type: "localfs", Dir: "/from/file"},
		CacheDir: "/file/cache", Xattrs: false, Amplify: 4096,
		Prefetch: PrefetchConfig{Enable: true, Workers: 3, All: false},
	}
	for _, c := range []struct {
		name      string
		flags     Flags
		bootstrap bool
		want      Config
	}{{
		name:  "defaults for an image reference",
		flags: Flags{BackendType: localfs, PrefetchWorkers: Flag[int]{Value: 8}},
		want:  Config{Xattrs: true, Amplify: 1 << 20, Prefetch: PrefetchConfig{Workers: 8, All: true}},
	}, {
		name: "flags over defaults",
		flags: Flags{BackendType: localfs,
			CacheDir:        Flag[string]{"/flag/cache", true},
			Prefetch:        Flag[bool]{true, true},
			PrefetchWorkers: Flag[int]{2, true},
			HideXattrs:      Flag[bool]{true, true}},
		want: Config{CacheDir: "/flag/cache", Xattrs: false, Amplify: 1 << 20,
			Prefetch: PrefetchConfig{Enable: true, Workers: 2, All: true}},
	}, {
		name: "file over defaults; unset flags keep the file's values",
		flags: Flags{ConfigFile: file, BackendType: localfs,
			// Values differing from the file's but not given: no effect.
			CacheDir: Flag[string]{Value: "/unset"}, Prefetch: Flag[bool]{Value: false},
			PrefetchWorkers: Flag[int]{Value: 8}, HideXattrs: Flag[bool]{Value: false}},
		bootstrap: true,
		want:      fromFile,
	}, {
		name: "set flags over the file",
		flags: Flags{ConfigFile: file, BackendType: localfs,
			CacheDir:        Flag[string]{"/flag/cache", true},
			Prefetch:        Flag[bool]{false, true},
			PrefetchWorkers: Flag[int]{5, true},
			HideXattrs:      Flag[bool]{false, true}}, // shows xattrs the file hides
		bootstrap: true,
		want: Config{Backend: fromFile.Backend, CacheDir: "/flag/cache", Xattrs: true, Amplify: 4096,
			Prefetch: PrefetchConfig{Enable: false, Workers: 5, All: false}},
	}, {
		name: "an empty --cache-dir given replaces the file's work_dir",
		flags: Flags{ConfigFile: file, BackendType: localfs,
			CacheDir: Flag[string]{"", true}},
		want: func() Config { c := fromFile; c.CacheDir = ""; return c }(),
	}, {
		name: "--backend-config replaces the file's whole backend",
		flags: Flags{ConfigFile: file, BackendType: Flag[string]{"registry", true},
			BackendConfig: Flag[string]{`{"host": "127.0.0.1:5000", "repo": "app", "scheme": "http"}`, true}},
		bootstrap: true,
		want: func() Config {
			c := fromFile
			c.Backend = BackendConfig{Type: "registry", Scheme: "http", Host: "127.0.0.1:5000", Repo: "app"}
			return c
		}(),
	}, {
		name:      "--backend-config with the default type",
		flags:     Flags{BackendType: localfs, BackendConfig: Flag[string]{`{"dir": "/blobs"}`, true}},
		bootstrap: true,
		want: Config{Backend: BackendConfig{Type: "localfs", Dir: "/blobs"}, Xattrs: true, Amplify: 1 << 20,
			Prefetch: PrefetchConfig{Workers: 8, All: true}},
	}, {
		name:      "--backend-config-file",
		flags:     Flags{BackendType: localfs, BackendConfigFile: beFile},
		bootstrap: true,
		want: Config{Backend: BackendConfig{Type: "localfs", Dir: "/from/backend-file"}, Xattrs: true, Amplify: 1 << 20,
			Prefetch: PrefetchConfig{Workers: 8, All: true}},
	}} {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := FlagConfig(c.flags, c.bootstrap)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("FlagConfig =\n%+v\nwant\n%+v", got, c.want)
			}
		})
	}
}

func TestFlagConfigNotes(t *testing.T) {
	file := writeTemp(t, "nydusd.json", fileConfig)
	_, notes, err := FlagConfig(Flags{ConfigFile: file, BackendType: Flag[string]{"registry", true},
		BackendConfig: Flag[string]{`{"host": "h", "repo": "r", "connect_timeout": 3}`, true}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		file + ": digest_validate false: every chunk is still verified against its digest when fetched",
		"--backend-config: backend config.connect_timeout: not supported, ignored",
	}
	if !slices.Equal(notes, want) {
		t.Errorf("notes\n%q\nwant\n%q", notes, want)
	}
}

func TestFlagConfigErrors(t *testing.T) {
	file := writeTemp(t, "nydusd.json", fileConfig)
	bad := writeTemp(t, "bad.json", `{"device": {"backend": {"type": "localfs", "config": {"dir": "d"}}}, "moed": "direct"}`)
	beFile := writeTemp(t, "backend.json", `{"dir": "d"}`)
	localfs := Flag[string]{Value: "localfs"}
	for _, c := range []struct {
		name      string
		flags     Flags
		bootstrap bool
		want      string
	}{
		{"bootstrap without a backend", Flags{BackendType: localfs}, true, "--bootstrap needs a backend"},
		{"backend type without a config", Flags{BackendType: Flag[string]{"registry", true}}, false, "--backend-type needs --backend-config"},
		{"backend type without a config, even with a file", Flags{ConfigFile: file, BackendType: Flag[string]{"localfs", true}}, true, "--backend-type needs --backend-config"},
		{"both backend config flags", Flags{BackendType: localfs, BackendConfig: Flag[string]{`{"dir": "d"}`, true}, BackendConfigFile: beFile}, true, "not both"},
		{"bad backend config", Flags{BackendType: localfs, BackendConfig: Flag[string]{`{}`, true}}, true, `--backend-config: nydusd config: backend config: localfs needs "dir"`},
		{"unsupported backend", Flags{BackendType: Flag[string]{"oss", true}, BackendConfig: Flag[string]{`{}`, true}}, true, `"oss" is not supported yet`},
		{"missing config file", Flags{ConfigFile: filepath.Join(t.TempDir(), "absent.json"), BackendType: localfs}, true, "no such file"},
		{"missing backend config file", Flags{BackendType: localfs, BackendConfigFile: filepath.Join(t.TempDir(), "absent.json")}, true, "no such file"},
		{"bad config file", Flags{ConfigFile: bad, BackendType: localfs}, true, bad + `: nydusd config: unknown key(s) "moed"`},
		{"zero prefetch workers", Flags{BackendType: localfs, PrefetchWorkers: Flag[int]{0, true}}, false, "--prefetch-workers must be at least 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := FlagConfig(c.flags, c.bootstrap)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}
