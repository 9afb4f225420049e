// Package rafsbuild writes Nydus RAFS v6 images: data blobs of chunked,
// deduplicated, compressed file contents and the bootstraps that describe
// them, laid out as upstream nydus-image v2.4 lays them out (only compressed
// chunk bytes differ, as another zstd encoder makes them).
//
// It has three entry points. BuildDir builds one bootstrap and one blob from
// a directory, like `nydus-image create` on a directory. BuildLayer streams
// one uncompressed OCI layer tar into a blob that carries its own bootstrap,
// chunk trailer and TOC, like `nydus-image create --type tar-rafs
// --blob-inline-meta --features blob-toc`; a ChunkDict shared by the layers
// of one image stores each chunk once across them. Merge stacks such layers,
// applying OCI whiteouts, into the image bootstrap, like `nydus-image merge`.
//
// File contents are cut into chunks that a bounded pool of workers hashes
// and compresses while one writer commits them in a fixed order, so the
// output is the same whatever the worker count, and memory is bounded by
// chunk size × queue depth plus per-entry metadata. The layout engine places
// every inode as upstream does. BuildDir writes its outputs under temporary
// names and renames them into place only when everything succeeded.
//
// Section numbers (§) refer to docs/rafs-format.md.
package rafsbuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nydus-go/nydusify/internal/atomicfile"
	"github.com/nydus-go/nydusify/internal/logs"
	"github.com/nydus-go/nydusify/rafs"
)

// Options configure a build. The zero value builds uncompressed blobs with
// blake3 digests and 1 MiB chunks on GOMAXPROCS workers.
type Options struct {
	// FsVersion is the RAFS version of the bootstraps: 6 (0 means 6) or 5
	// (§4; the blobs are the same).
	FsVersion  int
	Compressor rafs.Compressor
	Digester   rafs.Digester
	// ChunkSize is a power of two in [0x1000, 0x1000000]; 0 means 0x100000.
	ChunkSize uint32
	// Workers hashing and compressing chunks; 0 means GOMAXPROCS. It never
	// changes the output.
	Workers int
	// Progress, if set, is called every ProgressInterval while file data is
	// read, from another goroutine. Layer builds report no totals.
	Progress func(Progress)
	// ProgressInterval defaults to one second.
	ProgressInterval time.Duration
	// Logger receives warnings about input that was skipped, such as
	// xattrs EROFS cannot store in a layer tar, or prefetch patterns an
	// earlier one covers. Nil discards (see internal/logs).
	Logger logrus.FieldLogger
	// PrefetchPatterns are absolute paths for the bootstrap's prefetch
	// table (nydus-image --prefetch-policy fs): each one naming a path gets
	// that path's nid, in order; a pattern an earlier one covers is
	// dropped. Converters pass "/", which nydusd reads as "prefetch
	// everything". A directory build also writes the covered files' data
	// first. Empty means no prefetch table.
	PrefetchPatterns []string
}

// Progress reports how much file data a build has read.
type Progress struct {
	Files, TotalFiles uint64
	Bytes, TotalBytes uint64
}

func (o *Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// Validate checks the options and fills in the default chunk size; builds
// call it themselves, callers may call it early to fail fast.
func (o *Options) Validate() error {
	switch o.FsVersion {
	case 0:
		o.FsVersion = 6
	case 5, 6:
	default:
		return fmt.Errorf("RAFS version %d: only 5 and 6 can be built", o.FsVersion)
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = rafs.DefaultChunkSize
	}
	if err := rafs.CheckChunkSize(o.ChunkSize); err != nil {
		return err
	}
	switch o.Compressor {
	case rafs.CompressNone, rafs.CompressLZ4Block, rafs.CompressZstd:
	default:
		return fmt.Errorf("compressor %v is not supported for building", o.Compressor)
	}
	if o.Digester != rafs.DigestBlake3 && o.Digester != rafs.DigestSha256 {
		return fmt.Errorf("unknown digester %v", o.Digester)
	}
	patterns, err := normalizePatterns(o.PrefetchPatterns, logs.Or(o.Logger))
	if err != nil {
		return err
	}
	o.PrefetchPatterns = patterns
	return nil
}

// BlobInfo describes the data blob of a build.
type BlobInfo struct {
	BlobID           string `json:"blob_id"`
	Path             string `json:"path"`
	CompressedSize   uint64 `json:"compressed_size"`
	UncompressedSize uint64 `json:"uncompressed_size"`
	ChunkCount       uint32 `json:"chunk_count"`
}

// Result is what a build produced; it is also written as output.json.
type Result struct {
	FsVersion  string     `json:"fs_version"`
	Compressor string     `json:"compressor"`
	Digester   string     `json:"digester"`
	ChunkSize  string     `json:"chunk_size"`
	Bootstrap  string     `json:"bootstrap"`
	BootSize   int64      `json:"bootstrap_size"`
	Blobs      []string   `json:"blobs"` // blob ids, as upstream's output.json lists them
	BlobInfo   []BlobInfo `json:"blob_info"`

	Entries     uint32 `json:"entries"`
	Files       uint64 `json:"regular_files"`
	DataBytes   uint64 `json:"data_bytes"`   // regular-file bytes read
	Chunks      uint64 `json:"chunks"`       // chunks cut, before dedup
	DedupChunks uint64 `json:"dedup_chunks"` // chunks found already in the blob
	DedupBytes  uint64 `json:"dedup_bytes"`

	Timings Timings `json:"timings_ms"`
}

// Timings of the build phases, in milliseconds.
type Timings struct {
	Walk      int64 `json:"walk"`
	Data      int64 `json:"data"`
	Bootstrap int64 `json:"bootstrap"`
	Total     int64 `json:"total"`
}

// OutputJSON is the name of the build report in the output directory.
const OutputJSON = "output.json"

// BuildDir builds a RAFS v6 (or, with opts.FsVersion 5, v5) image from the directory src into outDir:
// <name>.meta (the bootstrap), the blob named by its id (absent when the
// tree holds no file data) and output.json. On failure nothing is left in
// outDir, and outDir itself is removed if BuildDir created it.
func BuildDir(ctx context.Context, src, outDir, name string, opts Options) (_ *Result, err error) {
	start := time.Now()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		return nil, fmt.Errorf("invalid output name %q", name)
	}
	if st, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("source directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("source %s is not a directory", src)
	}
	if inside, err := isWithin(outDir, src); err != nil {
		return nil, err
	} else if inside {
		return nil, fmt.Errorf("output directory %s is inside the source directory %s: the build would read its own output", outDir, src)
	}
	out, err := newOutput(outDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			out.abort()
		}
	}()

	t := newTree()
	if err := walkDir(ctx, src, t); err != nil {
		return nil, err
	}
	sortChildren(t.root)
	lay, err := layout(t, uint64(opts.ChunkSize))
	if err != nil {
		return nil, err
	}
	walked := time.Now()

	blobFile, err := out.temp("blob")
	if err != nil {
		return nil, err
	}
	bw := newBlobWriter(blobFile, &opts, false)
	stopProgress := reportProgress(&opts, dirTotals(lay.order), bw)
	err = readDirData(ctx, src, prefetchFirst(lay.order, opts.PrefetchPatterns), bw)
	stopProgress()
	if err != nil {
		bw.drain()
		return nil, err
	}
	blob, err := bw.finish()
	if err != nil {
		return nil, err
	}
	dataDone := time.Now()

	params := &bootstrapParams{
		version:   opts.FsVersion,
		flags:     opts.Compressor.SuperFlag() | opts.Digester.SuperFlag(),
		chunkSize: uint64(opts.ChunkSize),
		blobIndex: map[*blobWriter]uint32{bw: 0},
		prefetch:  prefetchNodes(t, opts.PrefetchPatterns),
	}
	res := &Result{
		FsVersion: strconv.Itoa(opts.FsVersion), Compressor: opts.Compressor.String(), Digester: opts.Digester.String(),
		ChunkSize: fmt.Sprintf("%#x", opts.ChunkSize), Bootstrap: name + ".meta",
		Blobs: []string{}, BlobInfo: []BlobInfo{}, Entries: lay.inodes,
		DataBytes: bw.stats.dataBytes, Chunks: bw.stats.chunks,
		DedupChunks: bw.stats.dedupChunks, DedupBytes: bw.stats.dedupBytes,
	}
	for _, n := range lay.order {
		if n.isReg() {
			res.Files++
		}
	}
	if blob != nil {
		params.blobs = []rafs.BlobEntry{blob.entry}
		out.keep(blobFile, blob.entry.BlobID)
		res.Blobs = append(res.Blobs, blob.entry.BlobID)
		res.BlobInfo = append(res.BlobInfo, BlobInfo{
			BlobID: blob.entry.BlobID, Path: blob.entry.BlobID,
			CompressedSize: blob.entry.CompressedSize, UncompressedSize: blob.entry.UncompressedSize,
			ChunkCount: blob.entry.ChunkCount,
		})
	} else if err := blobFile.Abort(); err != nil {
		return nil, err
	}
	boot, err := writeBootstrap(t, lay, params)
	if err != nil {
		return nil, err
	}
	res.BootSize = int64(len(boot))
	if err := out.writeFile(res.Bootstrap, boot); err != nil {
		return nil, err
	}
	res.Timings = Timings{
		Walk: walked.Sub(start).Milliseconds(), Data: dataDone.Sub(walked).Milliseconds(),
		Bootstrap: time.Since(dataDone).Milliseconds(), Total: time.Since(start).Milliseconds(),
	}
	report, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := out.writeFile(OutputJSON, append(report, '\n')); err != nil {
		return nil, err
	}
	if err := out.commit(); err != nil {
		return nil, err
	}
	return res, nil
}

// isWithin reports whether path is dir or lies below it, once both are made
// absolute and their existing parts' symlinks resolved.
func isWithin(path, dir string) (bool, error) {
	resolve := func(p string) (string, error) {
		p, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		// Resolve the longest existing prefix; the rest does not exist yet.
		rest := ""
		for {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				return filepath.Join(r, rest), nil
			}
			parent := filepath.Dir(p)
			if parent == p {
				return filepath.Join(p, rest), nil
			}
			rest = filepath.Join(filepath.Base(p), rest)
			p = parent
		}
	}
	a, err := resolve(path)
	if err != nil {
		return false, err
	}
	b, err := resolve(dir)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(b, a)
	if err != nil {
		return false, nil
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")), nil
}

// dirTotals counts the files and bytes a directory build will read.
func dirTotals(order []*node) Progress {
	var total Progress
	for _, n := range order {
		if n.isReg() && n.primary == nil {
			total.TotalFiles++
			total.TotalBytes += n.data.size
		}
	}
	return total
}

// reportProgress calls opts.Progress periodically, with the totals given
// (zero when unknown, as for a tar stream), until stop is called.
func reportProgress(opts *Options, total Progress, bw *blobWriter) (stop func()) {
	if opts.Progress == nil {
		return func() {}
	}
	interval := opts.ProgressInterval
	if interval <= 0 {
		interval = time.Second
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				p := total
				p.Files, p.Bytes = bw.progress.files.Load(), bw.progress.bytes.Load()
				opts.Progress(p)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// output stages files under temporary names in one directory and renames
// them into place together at commit, or removes them all at abort.
type output struct {
	dir     string
	created bool
	staged  []staged // in commit order
	placed  []string // final paths renamed so far
	temps   []*atomicfile.File
}

func newOutput(dir string) (*output, error) {
	o := &output{dir: dir}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating output directory: %w", err)
		}
		o.created = true
	} else if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	} else if err := requireEmpty(dir); err != nil {
		return nil, err
	}
	return o, nil
}

// requireEmpty refuses an output directory that holds anything: a second
// build there would leave two bootstraps and their blobs side by side and
// replace output.json, describing only one of them.
func requireEmpty(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("output directory %s is not empty (it holds %q): give a new or empty directory, a build never mixes its files with others", dir, names[0])
	}
	return nil
}

func (o *output) temp(kind string) (*atomicfile.File, error) {
	f, err := atomicfile.Create(o.dir, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating %s in output directory: %w", kind, err)
	}
	o.temps = append(o.temps, f)
	return f, nil
}

// keep stages f to become name at commit.
func (o *output) keep(f *atomicfile.File, name string) {
	o.staged = append(o.staged, staged{f: f, name: name})
}

func (o *output) writeFile(name string, data []byte) error {
	f, err := o.temp("file")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	o.keep(f, name)
	return nil
}

type staged struct {
	f    *atomicfile.File
	name string
}

// commit syncs the staged files and renames them into place, the report last.
func (o *output) commit() error {
	for _, s := range o.staged {
		final := filepath.Join(o.dir, s.name)
		if err := s.f.Commit(final); err != nil {
			return fmt.Errorf("placing %s: %w", s.name, err)
		}
		o.placed = append(o.placed, final)
	}
	return nil
}

func (o *output) abort() {
	for _, f := range o.temps {
		f.Abort() // nothing for the committed ones
	}
	for _, p := range o.placed {
		os.Remove(p)
	}
	if o.created {
		os.Remove(o.dir)
	}
}
