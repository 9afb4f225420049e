package checker_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"

	"github.com/nydus-go/nydusify/checker"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/mountcheck"
)

// checkMounted is check with Mount set; it then asserts that nothing is
// mounted below the work directory and that the directory was emptied.
func checkMounted(t *testing.T, target, source string, logger logrus.FieldLogger) *checker.Report {
	t.Helper()
	work := t.TempDir()
	opts := checker.Options{Target: target, Source: source, SourceRegistry: ropts, TargetRegistry: ropts,
		WorkDir: work, Mount: true, Logger: logger}
	rep, err := checker.Check(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if left, err := mountcheck.MountsBelow(work); err != nil || len(left) != 0 {
		t.Errorf("left mounted: %v (%v)", left, err)
	}
	if ents, err := os.ReadDir(work); err != nil || len(ents) != 0 {
		t.Errorf("work directory %s: %v left (%v)", work, ents, err)
	}
	return rep
}

// TestCheckMount runs the filesystem rule through a FUSE mount of the image:
// the converted image passes; every difference from a tampered source is
// named; a byte flipped in a stored chunk makes the files of that chunk
// read as EIO, reported unreadable as the RAFS reader reports them; an
// image whose blob is not in the manifest is reported, not mounted.
func TestCheckMount(t *testing.T) {
	testenv.RequireFUSE(t)
	fx := converted(t)
	rep := checkMounted(t, fx.target, fx.src, nil)
	if !rep.OK || !rep.Mounted || len(rep.Rules) != 3 || rep.Files < 7 {
		t.Fatalf("good image: ok=%v mounted=%v rules=%v files=%d problems=%v", rep.OK, rep.Mounted, rep.Rules, rep.Files, rep.Problems)
	}
	if direct := check(t, fx.target, fx.src, checker.Options{}); direct.Files != rep.Files {
		t.Errorf("%d paths compared through the mount, %d through the reader", rep.Files, direct.Files)
	}

	tampered, want := pushTampered(t, fx.host)
	if rep := checkMounted(t, fx.target, tampered, nil); rep.OK || len(missing(rep, want)) != 0 {
		t.Errorf("tampered source: missing %v among %v", missing(rep, want), rep.Problems)
	}

	// Serve a manifest without the data blob: the bootstrap's blob table
	// names a blob nothing can fetch, so there is nothing to mount.
	tref, _ := name.ParseReference(fx.target, name.Insecure)
	img, err := remote.Image(tref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	layers, _ := img.Layers()
	boot := m.Layers[len(m.Layers)-1]
	noBlob, err := mutate.Append(mutate.MediaType(empty.Image, m.MediaType),
		mutate.Addendum{Layer: layers[len(layers)-1], MediaType: boot.MediaType, Annotations: boot.Annotations})
	if err != nil {
		t.Fatal(err)
	}
	rep = checkMounted(t, push(t, fx.host, "nydus/no-blob:v1", noBlob), fx.src, nil)
	notCompared := false
	for _, p := range rep.Problems {
		notCompared = notCompared || p.Rule == checker.RuleFilesystem && strings.HasPrefix(p.Message, "not compared")
	}
	if rep.OK || rep.Mounted || !notCompared {
		t.Errorf("image without its blob: ok=%v mounted=%v problems=%v", rep.OK, rep.Mounted, rep.Problems)
	}

	flipBlobByte(t, fx)
	var logged bytes.Buffer
	rep = checkMounted(t, fx.target, fx.src, logs.New(&logged))
	bad := unreadable(rep)
	for _, p := range []string{"/bin/alias", "/bin/tool"} {
		if !strings.Contains(bad[p], "input/output error") {
			t.Errorf("%s: %q, want an EIO", p, bad[p])
		}
	}
	direct := unreadable(check(t, fx.target, fx.src, checker.Options{}))
	if rep.OK || len(bad) != len(direct) {
		t.Errorf("corrupted blob: unreadable through the mount %v, through the reader %v; problems %v", bad, direct, rep.Problems)
	}
	if !strings.Contains(logged.String(), "rafsfs: read of inode") {
		t.Errorf("the log does not give the cause of the EIO: %q", logged.String())
	}
}
