package backend_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/internal/faultproxy"
	"github.com/nydus-go/nydusify/internal/retry"
	"github.com/nydus-go/nydusify/internal/testenv"
)

// TestRegistryFaults reads ranges of a blob stored in Debian's
// docker-registry through a proxy that injects 5xx answers, resets, cut
// bodies and stalls: at 10% every read returns the right bytes; when every
// request fails, reads fail, and never with wrong bytes.
func TestRegistryFaults(t *testing.T) {
	addr := testenv.StartRegistry(t)
	data, id := testData()
	direct, err := name.NewRepository(addr+"/faults/blob", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(direct, static.NewLayer(data, types.OCILayer)); err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.Start("http://"+addr, faultproxy.Options{Rate: 0.1, Seed: 7, StallFor: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	repo, err := name.NewRepository(px.Host+"/faults/blob", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	policy := retry.Policy{Attempts: 8, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Stall: 300 * time.Millisecond}
	be, err := backend.NewRegistry(repo, backend.WithRetry(policy))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	for i := range 150 {
		off := rng.IntN(len(data))
		n := 1 + rng.IntN(min(len(data)-off, 20000))
		p := make([]byte, n)
		got, err := be.ReadAt(ctx, id, p, int64(off))
		if err != nil || got != n || !bytes.Equal(p, data[off:off+n]) {
			t.Fatalf("read %d (%d+%d) at 10%% faults: %d bytes, %v, equal %v", i, off, n, got, err, bytes.Equal(p[:got], data[off:off+got]))
		}
	}
	reqs, faults := px.Stats()
	t.Logf("%d requests, faults %v", reqs, faults)
	if faults[faultproxy.Truncate] == 0 || faults[faultproxy.Reset] == 0 {
		t.Errorf("too few faults injected to prove anything: %v", faults)
	}

	px.SetRate(1)
	for i := range 5 {
		p := make([]byte, 5000)
		got, err := be.ReadAt(ctx, id, p, int64(i*1000))
		if err == nil {
			t.Errorf("read %d succeeded with every request failing", i)
		}
		if !bytes.Equal(p[:got], data[i*1000:i*1000+got]) {
			t.Errorf("read %d returned wrong bytes under faults", i)
		}
	}
}
