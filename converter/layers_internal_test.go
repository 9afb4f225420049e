package converter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// probeLayer is a registry layer whose download either fails at once or
// records whether it was started after convertLayers had returned.
type probeLayer struct {
	fail     bool
	work     string
	returned *atomic.Bool  // set by the test once convertLayers returned
	late     *atomic.Int32 // downloads started after that
	gone     *atomic.Int32 // downloads started with the work directory removed
}

func (l probeLayer) Compressed() (io.ReadCloser, error) {
	if l.returned.Load() {
		l.late.Add(1)
	}
	if _, err := os.Stat(l.work); err != nil {
		l.gone.Add(1)
	}
	if l.fail {
		return nil, errors.New("registry says no")
	}
	return io.NopCloser(bytes.NewReader(probeBody)), nil
}

// probeBody is what a probe layer that does not fail serves: an empty tar
// (two zero blocks and padding), with its true digest, so that the failing
// layer's error is the only one whichever layer converts first.
var probeBody = make([]byte, 1<<10)

func (probeLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(probeBody))
	return h, err
}
func (l probeLayer) DiffID() (v1.Hash, error)           { return l.Digest() }
func (probeLayer) Uncompressed() (io.ReadCloser, error) { return nil, errors.New("not used") }
func (probeLayer) Size() (int64, error)                 { return 1 << 10, nil }
func (probeLayer) MediaType() (types.MediaType, error)  { return types.OCILayer, nil }

// A failed download ends convertLayers, which must not return while later
// downloads can still start: the caller removes the work directory they
// write into as soon as it returns. The window is a few scheduler steps
// wide, so the check repeats; before the fix nearly every round hit it.
func TestLayerDownloadsStopBeforeReturn(t *testing.T) {
	const rounds, layers = 50, 40
	for _, jobs := range []int{1, 4} {
		var late, gone int32
		for r := 0; r < rounds; r++ {
			work := filepath.Join(t.TempDir(), "work")
			if err := os.Mkdir(work, 0o755); err != nil {
				t.Fatal(err)
			}
			var returned atomic.Bool
			var lateN, goneN atomic.Int32
			ls := make([]v1.Layer, layers)
			for i := range ls {
				ls[i] = probeLayer{fail: i == 0, work: work, returned: &returned, late: &lateN, gone: &goneN}
			}
			c := &converter{opts: Options{Concurrency: jobs}, work: work}
			_, _, err := c.convertLayers(context.Background(), ls, true, v1.Platform{})
			returned.Store(true)
			os.RemoveAll(work) // as Convert does on return
			if err == nil || !strings.Contains(err.Error(), "registry says no") {
				t.Fatalf("jobs %d: err = %v, want the first layer's download error", jobs, err)
			}
			// Give stray downloads, if any, time to start.
			time.Sleep(5 * time.Millisecond)
			late += lateN.Load()
			gone += goneN.Load()
		}
		if late > 0 || gone > 0 {
			t.Errorf("jobs %d: %d downloads started after convertLayers returned, %d with the work directory removed (%d rounds)", jobs, late, gone, rounds)
		}
	}
}
