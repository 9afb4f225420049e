package backend_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nydus-go/nydusify/backend"
	"github.com/nydus-go/nydusify/internal/testenv"
)

// BenchmarkS3Push uploads a 1 GiB blob (override with NYDUSIFY_BENCH_MIB)
// to a real MinIO with PushBlob (forced, multipart) and with `s3cmd put`,
// alternating, and reports both throughputs and their ratio (ours over
// s3cmd's; the yardstick is at least 0.8) as the best of the runs:
//
//	go test ./backend -run XXX -bench S3Push -benchtime 3x
func BenchmarkS3Push(b *testing.B) {
	mib := 1024
	if v := os.Getenv("NYDUSIFY_BENCH_MIB"); v != "" {
		fmt.Sscan(v, &mib)
	}
	m := testenv.StartMinIO(b)
	path := filepath.Join(b.TempDir(), "blob")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	// Incompressible content: a chunked blob is zstd output.
	if _, err := io.CopyN(f, rnd{}, int64(mib)<<20); err != nil {
		b.Fatal(err)
	}
	f.Close()
	cfg := minioConfig(m)
	cfg.PartSize = 0 // the default part size
	s, err := backend.NewS3(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	id := strings.Repeat("b", 64)
	var ours, theirs []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := s.PushBlob(context.Background(), id, path, true); err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))
		start = time.Now()
		m.S3Cmd(b, "put", path, "s3://"+m.Bucket+"/s3cmd/blob")
		theirs = append(theirs, time.Since(start))
	}
	b.StopTimer()
	best := func(ds []time.Duration) float64 {
		m := ds[0]
		for _, d := range ds {
			m = min(m, d)
		}
		return float64(mib) / m.Seconds()
	}
	b.ReportMetric(best(ours), "MiB/s")
	b.ReportMetric(best(theirs), "s3cmd-MiB/s")
	b.ReportMetric(best(ours)/best(theirs), "ratio")
	b.Logf("ours %v, s3cmd %v", ours, theirs)
}

// rnd is a fast stream of pseudo-random bytes (xorshift).
type rnd struct{}

var rndState uint64 = 88172645463325252

func (rnd) Read(p []byte) (int, error) {
	for i := range p {
		rndState ^= rndState << 13
		rndState ^= rndState >> 7
		rndState ^= rndState << 17
		p[i] = byte(rndState)
	}
	return len(p), nil
}
