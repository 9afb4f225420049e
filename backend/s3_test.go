package backend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/internal/faultproxy"
	"github.com/nydus-go/nydusify/internal/retry"
	"github.com/nydus-go/nydusify/internal/testenv"
)

func minioConfig(m *testenv.MinIO) backend.S3Config {
	return backend.S3Config{
		Endpoint: m.Endpoint, Scheme: "http", Region: m.Region, Bucket: m.Bucket,
		AccessKeyID: m.AccessKey, SecretAccessKey: backend.Secret(m.SecretKey),
		ObjectPrefix: "blobs/", MetaPrefix: "meta/",
		PartSize: 5 << 20, Retry: retry.Policy{Backoff: time.Millisecond},
	}
}

func randomFile(t *testing.T, size int, seed uint64) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// TestS3PushRead: a small blob (one PUT) and a 13 MiB one (three 5 MiB
// parts in parallel) land under object_prefix+id, as s3cmd sees and
// downloads them byte for byte; ranged reads, including one running past the
// end, return the right bytes; a second push skips, a forced one sends.
func TestS3PushRead(t *testing.T) {
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	s, err := backend.NewS3(ctx, minioConfig(m))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	const small, large = "1111111111111111111111111111111111111111111111111111111111111111",
		"2222222222222222222222222222222222222222222222222222222222222222"
	files := map[string][]byte{}
	for i, c := range []struct {
		id   string
		size int
	}{{small, 300 << 10}, {large, 13<<20 + 12345}} {
		path, data := randomFile(t, c.size, uint64(i))
		files[c.id] = data
		res, err := s.PushBlob(ctx, c.id, path, false)
		if err != nil {
			t.Fatal(err)
		}
		if res.Skipped || res.Size != int64(c.size) || res.Location != "s3://"+m.Bucket+"/blobs/"+c.id {
			t.Fatalf("push %s: %+v", c.id, res)
		}
		got := filepath.Join(t.TempDir(), "got")
		m.S3Cmd(t, "get", "s3://"+m.Bucket+"/blobs/"+c.id, got)
		if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("s3cmd get %s: %d bytes (%v), want the %d pushed", c.id, len(b), err, len(data))
		}
		if res, err = s.PushBlob(ctx, c.id, path, false); err != nil || !res.Skipped {
			t.Fatalf("second push %s: %+v %v, want skipped", c.id, res, err)
		}
		if res, err = s.PushBlob(ctx, c.id, path, true); err != nil || res.Skipped {
			t.Fatalf("forced push %s: %+v %v, want sent", c.id, res, err)
		}
	}
	if got, want := m.Objects(t, ""), []string{"blobs/" + small, "blobs/" + large}; !sameSet(got, want) {
		t.Fatalf("bucket holds %q, want %q (no multipart leftovers, nothing else)", got, want)
	}

	data := files[large]
	if n, err := s.Size(ctx, large); err != nil || n != int64(len(data)) {
		t.Fatalf("Size = %d, %v", n, err)
	}
	for _, r := range [][2]int{{0, 1}, {5<<20 - 3, 10}, {len(data) - 100, 100}, {7 << 20, 4 << 20}} {
		p := make([]byte, r[1])
		if n, err := s.ReadAt(ctx, large, p, int64(r[0])); err != nil || n != r[1] || !bytes.Equal(p, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("ReadAt %d+%d: %d, %v, equal %v", r[0], r[1], n, err, bytes.Equal(p[:n], data[r[0]:r[0]+n]))
		}
	}
	p := make([]byte, 200)
	if n, err := s.ReadAt(ctx, large, p, int64(len(data)-50)); n != 50 || err != io.EOF || !bytes.Equal(p[:50], data[len(data)-50:]) {
		t.Fatalf("ReadAt past the end: %d, %v", n, err)
	}
	if n, err := s.ReadAt(ctx, large, p, int64(len(data))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end: %d, %v", n, err)
	}
	if _, err := s.Size(ctx, strings.Repeat("3", 64)); err == nil || !strings.Contains(err.Error(), "no object") {
		t.Fatalf("Size of a missing blob: %v", err)
	}

	metaPath, meta := randomFile(t, 4096, 9)
	if _, err := s.PushMeta(ctx, "app.meta", metaPath); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(t.TempDir(), "meta")
	m.S3Cmd(t, "get", "s3://"+m.Bucket+"/meta/app.meta", got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, meta) {
		t.Fatal("meta object differs from the file pushed")
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestS3Errors: wrong keys, a missing bucket and an unreachable endpoint fail
// with errors that name the bucket and endpoint and say what to fix, and
// never contain the secret.
func TestS3Errors(t *testing.T) {
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	closed := freeClosedAddr(t)
	cases := []struct {
		name string
		edit func(*backend.S3Config)
		want []string
	}{
		{"wrong secret", func(c *backend.S3Config) { c.SecretAccessKey = "not-the-secret-0123456789" },
			[]string{"access denied", `bucket "nydus"`, m.Endpoint}},
		{"missing bucket", func(c *backend.S3Config) { c.Bucket = "absent" },
			[]string{`bucket "absent"`, "does not exist", m.Endpoint}},
		{"unreachable", func(c *backend.S3Config) { c.Endpoint = closed },
			[]string{"unreachable", closed, `bucket "nydus"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := minioConfig(m)
			c.edit(&cfg)
			cfg.Retry = retry.Policy{Attempts: 2, Backoff: time.Millisecond}
			s, err := backend.NewS3(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			path, _ := randomFile(t, 1000, 1)
			for _, err := range []error{s.Check(ctx), pushErr(s, path)} {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if strings.Contains(err.Error(), m.SecretKey) || strings.Contains(err.Error(), string(cfg.SecretAccessKey)) {
					t.Errorf("error %q holds the secret", err)
				}
			}
		})
	}
}

func pushErr(s *backend.S3, path string) error {
	_, err := s.PushBlob(context.Background(), strings.Repeat("a", 64), path, false)
	return err
}

// TestS3Faults: with a proxy in front of MinIO answering 503, resetting
// connections and cutting bodies on a third of the requests, multipart
// pushes complete and ranged reads return the right bytes; s3cmd, talking
// to MinIO directly, downloads what was pushed intact.
func TestS3Faults(t *testing.T) {
	m := testenv.StartMinIO(t)
	px, err := faultproxy.Start("http://"+m.Endpoint, faultproxy.Options{Rate: 0.3, Seed: 7,
		Kinds: []faultproxy.Kind{faultproxy.Status, faultproxy.Reset, faultproxy.Truncate}})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	cfg := minioConfig(m)
	cfg.Endpoint = px.Host
	cfg.Retry = retry.Policy{Attempts: 12, Backoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx := context.Background()
	s, err := backend.NewS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("4", 64)
	path, data := randomFile(t, 16<<20+7, 4)
	if _, err := s.PushBlob(ctx, id, path, false); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(t.TempDir(), "got")
	m.S3Cmd(t, "get", "s3://"+m.Bucket+"/blobs/"+id, got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, data) {
		t.Fatal("the object s3cmd reads differs from the file pushed through faults")
	}
	p := make([]byte, 1<<20)
	for off := 0; off < len(data); off += len(p) {
		n, err := s.ReadAt(ctx, id, p, int64(off))
		if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(p[:n], data[off:off+n]) || n != min(len(p), len(data)-off) {
			t.Fatalf("ReadAt %d: %d, %v", off, n, err)
		}
	}
	if _, faults := px.Stats(); faults[faultproxy.Status]+faults[faultproxy.Reset]+faults[faultproxy.Truncate] == 0 {
		t.Fatal("no fault injected; the test proves nothing")
	}
}

// TestSecretRedacted: a configuration printed or marshalled never shows its
// secret.
func TestSecretRedacted(t *testing.T) {
	c := backend.S3Config{Bucket: "b", AccessKeyID: "id", SecretAccessKey: "very-secret-key"}
	for _, s := range []string{fmtV(c), fmtPlusV(c), fmtSharpV(c), jsonOf(t, c)} {
		if strings.Contains(s, "very-secret-key") {
			t.Fatalf("secret shown in %q", s)
		}
	}
}

func fmtV(v any) string      { return fmt.Sprintf("%v", v) }
func fmtPlusV(v any) string  { return fmt.Sprintf("%+v", v) }
func fmtSharpV(v any) string { return fmt.Sprintf("%#v", v) }

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// freeClosedAddr is a loopback address nothing listens on.
func freeClosedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
