package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// progressView renders progress: on a terminal, one status line redrawn in
// place under the log lines; otherwise plain log lines only.
type progressView struct {
	tty   bool
	mu    sync.Mutex // guards label, start and the status line
	label string
	start time.Time
	shown bool
}

func newProgressView() *progressView {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	return &progressView{tty: err == nil, start: time.Now()}
}

// interval is how often byte counts are reported: often on a terminal,
// rarely in logs.
func (v *progressView) interval() time.Duration {
	if v.tty {
		return 200 * time.Millisecond
	}
	return 10 * time.Second
}

// logf clears the status line, logs, and lets the next update redraw it.
func (v *progressView) logf(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.clearLocked()
	logrus.Infof(format, args...)
}

func (v *progressView) clearLocked() {
	if v.shown {
		fmt.Fprint(os.Stderr, "\r\033[K")
		v.shown = false
	}
}

// bytes reports data read so far by the current build step.
func (v *progressView) bytes(p rafsbuild.Progress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	rate := float64(p.Bytes) / 1e6 / time.Since(v.start).Seconds()
	line := fmt.Sprintf("%s %d MiB read, %.0f MB/s", v.label, p.Bytes>>20, rate)
	if p.TotalBytes > 0 {
		line = fmt.Sprintf("%s %d/%d MiB (%d%%), %d/%d files, %.0f MB/s", v.label, p.Bytes>>20, p.TotalBytes>>20,
			p.Bytes*100/p.TotalBytes, p.Files, p.TotalFiles, rate)
	}
	if !v.tty {
		logrus.Info(line)
		return
	}
	fmt.Fprint(os.Stderr, "\r\033[K"+line)
	v.shown = true
}

// done clears the status line at the end.
func (v *progressView) done() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.clearLocked()
}

// event renders a conversion event.
func (v *progressView) event(e converter.Event) {
	switch e.Kind {
	case converter.EventPlatformStart:
		v.mu.Lock()
		v.label, v.start = "layers", time.Now()
		v.mu.Unlock()
		v.logf("converting platform %s", e.Platform)
	case converter.EventLayerStart:
		v.logf("layer %d/%d %s (%d bytes): converting", e.Layer+1, e.Layers, e.Digest, e.Size)
	case converter.EventLayerDone:
		r := e.Report
		v.logf("layer %d/%d done: blob %s, %d bytes, %d chunks (%d deduplicated, %d from lower layers) in %d ms",
			e.Layer+1, e.Layers, r.BlobDigest, r.BlobSize, r.Chunks, r.DedupChunks, r.DictChunks, r.ConvertMs)
	case converter.EventMerged:
		v.logf("platform %s: bootstrap merged", e.Platform)
	case converter.EventPublishing:
		v.logf("publishing blobs, config and manifest")
	}
}
