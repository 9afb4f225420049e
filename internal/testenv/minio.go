package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MinIOVersion is the MinIO server module version the tests build. MinIO has
// no semantic-version tags, so it is pinned as a pseudo-version (an
// unpinned @latest would move under CI).
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

const minioModule = "github.com/minio/minio"

// MinIOBinaryPath is where MinIOBinary keeps the built server: a directory
// per version under the user's cache directory ($XDG_CACHE_HOME or
// ~/.cache), so every run on the machine reuses one build.
func MinIOBinaryPath() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the cache directory for the MinIO build: %w", err)
	}
	return filepath.Join(cache, "nydusify", "minio-"+MinIOVersion, "minio"), nil
}

// BuildMinIO returns the path of the MinIO server binary, building it from
// source with `go install` at MinIOVersion when the cache has none (minutes
// on a cold module cache). Concurrent callers (test packages run in
// parallel, .ci/run) wait on one lock and build once. No prebuilt binary is
// ever downloaded.
func BuildMinIO() (string, error) {
	bin, err := MinIOBinaryPath()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	dir := filepath.Dir(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	// go install writes into GOBIN; a private GOBIN renamed into place
	// means a killed build never leaves a half-written binary behind.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", minioModule+"@"+MinIOVersion)
	cmd.Dir = tmp // outside any module, so the project's go.mod plays no part
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building MinIO (%s): %v\n%s", cmd, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "minio"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// MinIO is a MinIO server started by StartMinIO, with one bucket.
type MinIO struct {
	Endpoint  string // "127.0.0.1:PORT", plain HTTP
	AccessKey string
	SecretKey string // random per server, so a test can search output for it
	Bucket    string
	Region    string // the region MinIO answers for
	DataDir   string // the server's storage; objects live below DataDir/Bucket

	s3cmd       string
	s3cmdConfig string
}

// StartMinIO builds MinIO if needed (BuildMinIO), starts it on a free
// loopback port with storage in a temporary directory and random
// credentials, waits until it is ready, creates the bucket "nydus" with
// s3cmd (the independent client that MinIO.S3Cmd runs), and stops the server
// when the test ends. It fails the test, never skips it, when MinIO cannot be
// built or started; it skips only when s3cmd is not installed.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	s3cmd := RequireTool(t, "s3cmd")
	bin, err := BuildMinIO()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := &MinIO{
		Endpoint:  freeLoopbackAddr(t),
		AccessKey: "nydusify" + randomHex(t, 4),
		SecretKey: randomHex(t, 20),
		Bucket:    "nydus",
		Region:    "us-east-1",
		DataDir:   filepath.Join(dir, "data"),
		s3cmd:     s3cmd,
	}
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "server", "--quiet", "--address", m.Endpoint,
		"--console-address", freeLoopbackAddr(t), m.DataDir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION="+m.Region)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting MinIO: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + m.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("MinIO on %s not ready within 30s: %v\n%s", m.Endpoint, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.s3cmdConfig = filepath.Join(dir, "s3cmd.cfg")
	conf := fmt.Sprintf("[default]\naccess_key = %s\nsecret_key = %s\nhost_base = %s\nhost_bucket = %s\n"+
		"bucket_location = %s\nuse_https = False\nsignature_v2 = False\n",
		m.AccessKey, m.SecretKey, m.Endpoint, m.Endpoint, m.Region)
	if err := os.WriteFile(m.s3cmdConfig, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.S3Cmd(t, "mb", "s3://"+m.Bucket)
	return m
}

// S3Cmd runs Debian's s3cmd against the server with its credentials and
// returns its standard output; a non-zero exit fails the test.
func (m *MinIO) S3Cmd(t testing.TB, args ...string) string {
	t.Helper()
	out, err := m.S3CmdErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// S3CmdErr is S3Cmd returning the failure instead of failing the test.
func (m *MinIO) S3CmdErr(args ...string) (string, error) {
	cmd := exec.Command(m.s3cmd, append([]string{"--config", m.s3cmdConfig, "--no-progress"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// Objects lists the keys below prefix in the bucket, as s3cmd sees them.
func (m *MinIO) Objects(t testing.TB, prefix string) []string {
	t.Helper()
	var keys []string
	root := "s3://" + m.Bucket + "/"
	for _, line := range strings.Split(m.S3Cmd(t, "ls", "-r", root+prefix), "\n") {
		if i := strings.Index(line, root); i >= 0 {
			keys = append(keys, line[i+len(root):])
		}
	}
	return keys
}

func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
