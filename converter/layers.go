package converter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/internal/retry"
	"github.com/nydus-go/nydusify/internal/verify"
	"github.com/nydus-go/nydusify/rafsbuild"
	"github.com/nydus-go/nydusify/tarstream"
)

// LayerReport describes the conversion of one source layer.
type LayerReport struct {
	SourceDigest v1.Hash `json:"source_digest"`
	SourceSize   int64   `json:"source_size"`
	BlobDigest   v1.Hash `json:"blob_digest"`
	BlobSize     int64   `json:"blob_size"`
	rafsbuild.LayerStats
	// Cache is "hit" for a layer taken from the build cache (not
	// fetched, not converted; its stats count entries and blob chunks
	// only), "miss" for one converted and recorded, "" without a cache.
	Cache     string `json:"cache,omitempty"`
	FetchMs   int64  `json:"fetch_ms"`
	ConvertMs int64  `json:"convert_ms"`
}

// convertedLayer is a layer blob waiting in the work directory.
type convertedLayer struct {
	layer  *rafsbuild.Layer
	path   string  // blob file, named by its digest
	diffID v1.Hash // sha256 of the source layer's uncompressed tar
	hints  rafsbuild.LayerHints
	cached *v1.Descriptor // the build cache's record, for a layer taken from it
}

// fetched is a source layer's compressed bytes, spilled to the work
// directory by the prefetcher, or nil for local sources read in place.
type fetched struct {
	path string
	ms   int64
	err  error
	done chan struct{}
}

// convertLayers converts the layers of one image. By default each layer is
// converted on its own (its blob and bootstrap depend only on the layer and
// the options), up to jobs layers at once; with CrossLayerDedup they are
// converted in order against a shared chunk dictionary, as lower layers
// must be done first. For registry sources up to jobs layers are downloaded
// to the work directory ahead of their conversion, so the network and the
// CPU overlap; memory stays bounded because layers are spilled, not
// buffered.
func (c *converter) convertLayers(ctx context.Context, layers []v1.Layer, remote bool, plat v1.Platform) ([]convertedLayer, []LayerReport, error) {
	pre := make([]*fetched, len(layers))
	for i := range pre {
		pre[i] = &fetched{done: make(chan struct{})}
	}
	// Layers the build cache holds are neither fetched nor converted.
	hits := make([]*v1.Descriptor, len(layers))
	if c.cache != nil {
		for i, l := range layers {
			if d, err := l.Digest(); err == nil {
				hits[i] = c.cache.lookup(plat, d)
			}
		}
	}
	// The downloads are submitted by their own goroutine, which waits for a
	// free slot, so conversion never blocks on submitting. On return the
	// still-running downloads are cancelled, then the submitter is waited
	// for before the group: once it has stopped no download can be added,
	// so when convertLayers returns nothing is left writing into the work
	// directory, which the caller removes.
	pctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(pctx)
	submitted := make(chan struct{})
	defer func() {
		cancel()
		<-submitted
		g.Wait()
	}()
	if remote {
		slots := make(chan struct{}, c.opts.jobs())
		go func() {
			defer close(submitted)
			for i, l := range layers {
				if hits[i] != nil {
					close(pre[i].done)
					continue
				}
				// Layers never submitted are never waited for: the group
				// is cancelled only by a failed download of an earlier
				// layer, or by convertLayers returning.
				select {
				case slots <- struct{}{}:
				case <-gctx.Done():
					return
				}
				if gctx.Err() != nil { // both were ready; select chose at random
					return
				}
				f := pre[i]
				g.Go(func() error {
					defer func() { <-slots }()
					defer close(f.done)
					start := time.Now()
					f.path, f.err = c.spill(gctx, l)
					f.ms = time.Since(start).Milliseconds()
					return f.err
				})
			}
		}()
	} else {
		close(submitted)
		for _, f := range pre {
			close(f.done)
		}
	}

	out := make([]convertedLayer, len(layers))
	reports := make([]LayerReport, len(layers))
	sum := &progressSum{read: make([]uint64, len(layers)), report: c.opts.Build.Progress}
	if c.opts.CrossLayerDedup {
		dict := rafsbuild.NewChunkDict()
		for i, l := range layers {
			var err error
			if out[i], reports[i], err = c.convertFetched(ctx, gctx, i, len(layers), l, pre[i], dict, sum); err != nil {
				return nil, nil, err
			}
		}
		return out, reports, g.Wait()
	}
	// Build cache records made now, and those taken.
	recs, used := make([]*v1.Descriptor, len(layers)), make([]*v1.Descriptor, len(layers))
	// A failed download stops the conversions too.
	cg, cctx := errgroup.WithContext(gctx)
	cg.SetLimit(c.opts.jobs())
	errs := make([]error, len(layers))
	for i, l := range layers {
		cg.Go(func() error {
			hit := hits[i] // hits is read by the download submitter too
			if hit != nil {
				out[i], reports[i], errs[i] = c.restoreCached(cctx, i, len(layers), l, *hit)
				if errs[i] != nil && cctx.Err() == nil {
					// A broken record (its blob gone or not a layer blob)
					// costs a conversion, not the conversion; the layer
					// was not downloaded, so it streams from the source.
					logs.Or(c.opts.Build.Logger).Warnf("%v; converting the layer instead", errs[i])
					hit = nil
				}
			}
			if hit == nil {
				out[i], reports[i], errs[i] = c.convertFetched(cctx, gctx, i, len(layers), l, pre[i], nil, sum)
				if errs[i] == nil && c.cache != nil {
					recs[i] = c.recordFresh(i, &out[i], &reports[i])
				}
			}
			used[i] = hit
			return errs[i]
		})
	}
	if cg.Wait() != nil {
		return nil, nil, lowestCause(errs)
	}
	// In layer order, whatever order the layers finished in: the cache
	// keeps the records used last first.
	for i := range layers {
		switch {
		case used[i] != nil:
			c.cache.use(plat, *used[i], true)
		case recs[i] != nil:
			c.cache.use(plat, *recs[i], false)
		}
	}
	return out, reports, g.Wait()
}

// lowestCause picks the error to report of layers that failed at once: the
// lowest layer's own failure, not a cancellation that another layer's
// failure caused, so the same input fails with the same message.
func lowestCause(errs []error) error {
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// restoreCached takes layer i of n from the build cache record d: the layer
// is restored from the cached blob's tail, read by ranges from the cache
// repository, and the blob becomes the target's layer by reference.
func (c *converter) restoreCached(ctx context.Context, i, n int, l v1.Layer, d v1.Descriptor) (convertedLayer, LayerReport, error) {
	digest, _ := l.Digest()
	size, _ := l.Size()
	c.progress(Event{Kind: EventLayerStart, Layer: i, Layers: n, Digest: digest, Size: size})
	start := time.Now()
	layer, err := c.cache.restore(ctx, d, c.opts.Build)
	if err != nil {
		return convertedLayer{}, LayerReport{}, fmt.Errorf("layer %d of %d (%s): %w", i+1, n, digest, err)
	}
	logs.Or(c.opts.Build.Logger).Infof("layer %d of %d (%s): build cache hit, blob %s", i+1, n, digest, d.Digest)
	rep := LayerReport{
		SourceDigest: digest, SourceSize: size, BlobDigest: d.Digest, BlobSize: d.Size, LayerStats: layer.Stats,
		Cache: "hit", ConvertMs: time.Since(start).Milliseconds(),
	}
	c.progress(Event{Kind: EventLayerDone, Layer: i, Layers: n, Digest: digest, Report: &rep})
	return convertedLayer{layer: layer, cached: &d}, rep, nil
}

// recordFresh makes the build cache record of a layer converted now, or
// returns nil when it cannot be recorded.
func (c *converter) recordFresh(i int, cl *convertedLayer, rep *LayerReport) *v1.Descriptor {
	rep.Cache = "miss"
	d, ok := c.cache.record(rep.SourceDigest, cl.layer, cl.hints)
	if !ok {
		logs.Or(c.opts.Build.Logger).Warnf("layer %d (%s): not recorded in the build cache: restoring it needs more than %d bytes of hints",
			i+1, rep.SourceDigest, maxHints)
		return nil
	}
	logs.Or(c.opts.Build.Logger).Infof("layer %d (%s): build cache miss, converted to blob %s", i+1, rep.SourceDigest, d.Digest)
	return &d
}

// progressSum reports the file data read by all the layers of an image
// together, as they convert at once.
type progressSum struct {
	mu     sync.Mutex
	read   []uint64 // by layer
	report func(rafsbuild.Progress)
}

// layer returns the progress callback of layer i's build, or nil when
// nobody listens.
func (p *progressSum) layer(i int) func(rafsbuild.Progress) {
	if p.report == nil {
		return nil
	}
	return func(q rafsbuild.Progress) {
		p.mu.Lock()
		p.read[i] = q.Bytes
		var total uint64
		for _, n := range p.read {
			total += n
		}
		p.mu.Unlock()
		p.report(rafsbuild.Progress{Bytes: total})
	}
}

// convertFetched converts layer i of n once its download f (in the group
// whose context is downloads) is done, and reports it; dict holds the
// chunks of lower layers to leave out, or is nil; sum gathers progress.
func (c *converter) convertFetched(ctx, downloads context.Context, i, n int, l v1.Layer, f *fetched, dict *rafsbuild.ChunkDict, sum *progressSum) (convertedLayer, LayerReport, error) {
	// A finished download goes first, so that its own error is reported
	// rather than the cancellation another layer's failure caused.
	select {
	case <-f.done:
	case <-ctx.Done():
		// Both may be ready at once (a failed download also cancels
		// ctx), and select then picks either.
		select {
		case <-f.done:
		default:
			return convertedLayer{}, LayerReport{}, ctx.Err()
		}
	}
	if f.err != nil {
		return convertedLayer{}, LayerReport{}, downloadError(f.err, downloads)
	}
	digest, err := l.Digest()
	if err != nil {
		return convertedLayer{}, LayerReport{}, fmt.Errorf("layer %d of %d: %w", i+1, n, err)
	}
	size, _ := l.Size()
	c.progress(Event{Kind: EventLayerStart, Layer: i, Layers: n, Digest: digest, Size: size})
	start := time.Now()
	opts := c.opts.Build
	opts.Progress = sum.layer(i)
	cl, err := c.convertLayer(ctx, l, f.path, opts, dict)
	if f.path != "" {
		os.Remove(f.path)
	}
	if err != nil {
		return convertedLayer{}, LayerReport{}, fmt.Errorf("converting layer %d of %d (%s): %w", i+1, n, digest, err)
	}
	rep := LayerReport{
		SourceDigest: digest, SourceSize: size,
		// rafsbuild names a layer blob by its hex sha256, the RAFS blob id.
		BlobDigest: v1.Hash{Algorithm: "sha256", Hex: cl.layer.Digest}, BlobSize: cl.layer.Size, LayerStats: cl.layer.Stats,
		FetchMs: f.ms, ConvertMs: time.Since(start).Milliseconds(),
	}
	c.progress(Event{Kind: EventLayerDone, Layer: i, Layers: n, Digest: digest, Report: &rep})
	return cl, rep, nil
}

// downloadError is the error to report for a failed download: a download
// cancelled because another one failed reports that other failure, the
// group's cause, rather than its own "context canceled".
func downloadError(err error, group context.Context) error {
	if cause := context.Cause(group); errors.Is(err, context.Canceled) && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// spill downloads a layer's compressed bytes into the work directory,
// verified against the layer's digest and size as they stream. A download
// cut short (a truncated body, a reset, a stall) or corrupted is started
// again from the beginning, as often as the source's retry policy allows; a
// request the retrying transport already gave up on is not tried again.
func (c *converter) spill(ctx context.Context, l v1.Layer) (string, error) {
	digest, err := l.Digest()
	if err != nil {
		return "", fmt.Errorf("fetching layer: %w", err)
	}
	size, err := l.Size()
	if err != nil {
		return "", fmt.Errorf("fetching layer %s: %w", digest, err)
	}
	f, err := os.CreateTemp(c.work, "source-*.layer")
	if err != nil {
		return "", err
	}
	err = c.opts.SourceRegistry.Policy().Do(ctx, "download", func(ctx context.Context) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := f.Truncate(0); err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return retry.Permanent(err)
		}
		body, err := verify.ReadCloser(rc, size, digest)
		if err != nil {
			return retry.Permanent(err)
		}
		defer body.Close()
		src := &readErr{r: ctxReader{ctx, body}}
		_, err = io.Copy(f, src)
		if err != nil && err == src.err && ctx.Err() == nil {
			// Whatever went wrong with the body (cut short, reset,
			// stalled, bytes that do not hash to the digest) may not
			// happen on the next download.
			return retry.Temporary(err)
		}
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("fetching layer %s: %w", digest, err)
	}
	return f.Name(), nil
}

// readErr remembers the error its reader returned, to tell it from the
// writer's.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// convertLayer streams one layer, decompressed, into a blob file named by
// its digest in the work directory.
func (c *converter) convertLayer(ctx context.Context, l v1.Layer, spilled string, opts rafsbuild.Options, dict *rafsbuild.ChunkDict) (convertedLayer, error) {
	var src io.ReadCloser
	var err error
	if spilled != "" {
		src, err = os.Open(spilled)
	} else {
		src, err = l.Compressed()
	}
	if err != nil {
		return convertedLayer{}, fmt.Errorf("opening layer: %w", err)
	}
	defer src.Close()
	tarStream, err := tarstream.Open(src)
	if err != nil {
		return convertedLayer{}, err
	}
	defer tarStream.Close()
	// The diff_id is the sha256 of the uncompressed tar, hashed as it streams.
	diffID := sha256.New()
	stream := io.TeeReader(tarStream, diffID)
	blob, err := os.CreateTemp(c.work, "blob-*.tmp")
	if err != nil {
		return convertedLayer{}, err
	}
	layer, err := rafsbuild.BuildLayer(ctx, ctxReader{ctx, stream}, blob, opts, dict)
	if err == nil {
		// Read past the tar's end so the gzip/zstd trailer is checked.
		if _, derr := io.Copy(io.Discard, stream); derr != nil {
			err = fmt.Errorf("reading layer stream: %w", derr)
		}
	}
	if cerr := blob.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(blob.Name())
		return convertedLayer{}, err
	}
	cl := convertedLayer{layer: layer, path: filepath.Join(c.work, layer.Digest), hints: layer.Hints(),
		diffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diffID.Sum(nil))}}
	if err := os.Rename(blob.Name(), cl.path); err != nil {
		return convertedLayer{}, err
	}
	return cl, nil
}

// ctxReader stops a stream when the context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
