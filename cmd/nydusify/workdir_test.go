package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nydus-go/nydusify/internal/faultproxy"
	fx "github.com/nydus-go/nydusify/internal/imagefixture"
	"github.com/nydus-go/nydusify/internal/testenv"
)

// TestKilledConvertWorkDir SIGKILLs a real convert while it waits on a
// stalling registry, mid-way, and requires that it left its work directory
// (named with its pid) and that the next convert into the same --work-dir
// removes it.
func TestKilledConvertWorkDir(t *testing.T) {
	host := testenv.StartRegistry(t)
	if err := remote.Write(fx.MustRef(t, host+"/app:v1"), fx.NewImage(t, fx.AMD64, true, fx.Gzip).Image); err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.Start("http://"+host, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Stall}, StallFor: time.Hour,
		Match: func(r *http.Request) bool {
			return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	dir := t.TempDir()
	work := filepath.Join(dir, "work")

	cmd := exec.Command(binary, "convert", "--source", px.Host+"/app:v1", "--target", "oci:"+filepath.Join(dir, "out")+":a",
		"--plain-http", "--work-dir", work)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("nydusify-convert-%d-", cmd.Process.Pid)
	var left string
	for deadline := time.Now().Add(30 * time.Second); left == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, faults := px.Stats(); faults[faultproxy.Stall] == 0 {
			continue // not yet stalled on a blob
		}
		matches, _ := filepath.Glob(filepath.Join(work, prefix+"*"))
		if len(matches) == 1 {
			left = matches[0]
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if left == "" {
		t.Fatalf("no %s* work directory appeared while convert stalled", prefix)
	}
	if _, err := os.Stat(left); err != nil {
		t.Fatalf("the killed convert left nothing behind, so the test proves nothing: %v", err)
	}

	if r := run(t, nil, "convert", "--source", host+"/app:v1", "--target", "oci:"+filepath.Join(dir, "out")+":b",
		"--plain-http", "--work-dir", work); r.code != 0 {
		t.Fatalf("second convert: %s", r.stderr)
	}
	entries, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s left in the work directory after the second convert", e.Name())
	}

	// A --work-dir that convert had to create is gone again afterwards.
	fresh := filepath.Join(dir, "fresh")
	if r := run(t, nil, "convert", "--source", host+"/app:v1", "--target", "oci:"+filepath.Join(dir, "out")+":c",
		"--plain-http", "--work-dir", fresh); r.code != 0 {
		t.Fatalf("third convert: %s", r.stderr)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the --work-dir convert created is still there: %v", err)
	}
}
