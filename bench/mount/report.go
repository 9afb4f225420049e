package main

import (
	"fmt"
	"io"
	"strings"
)

// row is one timed case.
type row struct {
	Case    string  `json:"case"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s,omitempty"`
	// VsPlainCold and VsPlainWarm are Seconds over the plain directory's.
	VsPlainCold float64 `json:"vs_plain_cold"`
	VsPlainWarm float64 `json:"vs_plain_warm"`
}

// report is everything measured; -json prints it as is.
type report struct {
	CPUs             int    `json:"cpus"`
	PageCacheDropped bool   `json:"page_cache_dropped"`
	Registry         string `json:"registry"`
	Runs             int    `json:"runs"`
	ReadRuns         int    `json:"read_runs"`

	Entries            int       `json:"entries"`
	BootstrapBytes     int64     `json:"bootstrap_bytes"`
	EntriesBuildSecs   float64   `json:"entries_build_seconds"`
	MountSeconds       []float64 `json:"mount_seconds"`
	MountBestSeconds   float64   `json:"mount_best_seconds"`
	MountColdSeconds   float64   `json:"mount_cold_page_cache_seconds"`
	Walk               []row     `json:"walk"`
	Tree               string    `json:"tree"`
	TreeFiles          int       `json:"tree_files"`
	TreeBytes          int64     `json:"tree_bytes"`
	TreeBootstrapBytes int64     `json:"tree_bootstrap_bytes"`
	TreeBlobBytes      int64     `json:"tree_blob_bytes"`
	TreeConvertSecs    float64   `json:"tree_convert_seconds"`
	Readers            int       `json:"readers"`
	Read               []row     `json:"read"`
}

// ratios fills in rows from secs, the first two being the plain
// directory's cold and warm times, and MB/s of size bytes when size > 0.
func ratios(rows []row, secs []float64, size int64) []row {
	for i := range rows {
		rows[i].Seconds = secs[i]
		rows[i].VsPlainCold = secs[i] / secs[0]
		rows[i].VsPlainWarm = secs[i] / secs[1]
		if size > 0 {
			rows[i].MBps = mb(size) / secs[i]
		}
	}
	return rows
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// coldWord says what state a "cold" case's page cache was in.
func coldWord(dropped bool) string {
	if dropped {
		return "cold"
	}
	return "NOT dropped"
}

func printReport(w io.Writer, r *report) {
	cache := "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every cold case"
	if !r.PageCacheDropped {
		cache = "page cache could NOT be dropped: the cold cases ran warm"
	}
	fmt.Fprintf(w, "%d CPUs; %s\n\n", r.CPUs, cache)

	fmt.Fprintf(w, "== mount: bootstrap of %d entries (%.1f MB, built in %.1f s) ==\n", r.Entries, mb(r.BootstrapBytes), r.EntriesBuildSecs)
	runs := make([]string, len(r.MountSeconds))
	for i, s := range r.MountSeconds {
		runs[i] = fmt.Sprintf("%.3f", s)
	}
	fmt.Fprintf(w, "mount time until usable, page cache warm: %.3f s best of %d (%s)\n", r.MountBestSeconds, r.Runs, strings.Join(runs, ", "))
	fmt.Fprintf(w, "mount time until usable, page cache %s:  %.3f s\n\n", coldWord(r.PageCacheDropped), r.MountColdSeconds)
	fmt.Fprintf(w, "metadata walk (ReadDir + Lstat), best of %d  %9s %14s %14s\n", r.ReadRuns, "seconds", "vs plain cold", "vs plain warm")
	for _, x := range r.Walk {
		fmt.Fprintf(w, "%-43s %9.3f %13.2fx %13.2fx\n", x.Case, x.Seconds, x.VsPlainCold, x.VsPlainWarm)
	}

	fmt.Fprintf(w, "\n== full read of %s: %d files, %.1f MB; bootstrap %.1f MB, blob %.1f MB zstd, converted in %.1f s ==\n",
		r.Tree, r.TreeFiles, mb(r.TreeBytes), mb(r.TreeBootstrapBytes), mb(r.TreeBlobBytes), r.TreeConvertSecs)
	fmt.Fprintf(w, "%d readers, walk included; registry: %s\n", r.Readers, r.Registry)
	fmt.Fprintf(w, "%-43s %9s %9s %14s %14s\n", fmt.Sprintf("case, best of %d", r.ReadRuns), "seconds", "MB/s", "vs plain cold", "vs plain warm")
	for _, x := range r.Read {
		fmt.Fprintf(w, "%-43s %9.2f %9.1f %13.2fx %13.2fx\n", x.Case, x.Seconds, x.MBps, x.VsPlainCold, x.VsPlainWarm)
	}
}
