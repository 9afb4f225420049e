package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nydus-go/nydusify/converter"
	"github.com/nydus-go/nydusify/rafsbuild"
)

// humanSize renders a byte count with a binary unit: "512 B", "3.0 KiB", "1.2 MiB".
func humanSize[T ~int64 | ~uint64 | ~int](n T) string {
	f := float64(n)
	if f < 1024 {
		return fmt.Sprintf("%d B", int64(n))
	}
	for _, unit := range []string{"KiB", "MiB", "GiB"} {
		f /= 1024
		if f < 1024 {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	return fmt.Sprintf("%.1f TiB", f/1024)
}

// humanSpeed renders bytes handled in ms milliseconds as MiB/s; "" when too fast to time.
func humanSpeed[T ~int64 | ~uint64](bytes T, ms int64) string {
	if ms <= 0 {
		return ""
	}
	return fmt.Sprintf("%.1f MiB/s", float64(bytes)/(1<<20)/(float64(ms)/1000))
}

// humanSeconds renders milliseconds as seconds: "0.42 s".
func humanSeconds(ms int64) string { return fmt.Sprintf("%.2f s", float64(ms)/1000) }

// shortID shortens a blob id or hex digest to 12 characters, as docker shows image ids.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// chunkSizeText renders a chunk size as upstream writes it ("0x100000") with its unit.
func chunkSizeText(s string) string {
	if n, err := strconv.ParseUint(s, 0, 64); err == nil {
		return strings.Replace(humanSize(n), ".0 ", " ", 1) + " chunks"
	}
	return s + " chunks"
}

// plural renders n with its noun: "1 layer", "3 layers".
func plural(n int, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "y"):
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// mediaTypeName names the manifest media types convert publishes.
func mediaTypeName(mt string) string {
	switch mt {
	case "application/vnd.oci.image.manifest.v1+json":
		return "OCI image manifest"
	case "application/vnd.oci.image.index.v1+json":
		return "OCI image index"
	}
	return mt
}

// writeBuildSummary prints what a build made, for a person: the files, the tree, the blob,
// dedup and the time taken, with units.
func writeBuildSummary(w io.Writer, bootstrap string, r *rafsbuild.Result) {
	fmt.Fprintf(w, "built %s (RAFS v%s, %s, %s, %s digests)\n", bootstrap, r.FsVersion, r.Compressor, chunkSizeText(r.ChunkSize), r.Digester)
	fmt.Fprintf(w, "  tree       %s, %s, %s of file data\n", plural(int(r.Entries), "entry"), plural(int(r.Files), "regular file"), humanSize(r.DataBytes))
	fmt.Fprintf(w, "  bootstrap  %s\n", humanSize(r.BootSize))
	if len(r.BlobInfo) == 0 {
		fmt.Fprintf(w, "  blob       none (no file has data)\n")
	}
	for _, b := range r.BlobInfo {
		fmt.Fprintf(w, "  blob       %s: %s stored (%s uncompressed), %s\n",
			shortID(b.BlobID), humanSize(b.CompressedSize), humanSize(b.UncompressedSize), plural(int(b.ChunkCount), "chunk"))
	}
	fmt.Fprintf(w, "  dedup      %d of %d chunks were repeats, stored once (%s saved)\n", r.DedupChunks, r.Chunks, humanSize(r.DedupBytes))
	line := "  time       " + humanSeconds(r.Timings.Total)
	if s := humanSpeed(r.DataBytes, r.Timings.Total); s != "" {
		line += ", " + s + " of file data"
	}
	fmt.Fprintln(w, line)
}

// writeConvertSummary prints what a conversion made, for a person: per platform the layers,
// sizes before and after, dedup, then the times, with units.
func writeConvertSummary(w io.Writer, r *converter.Report) {
	fmt.Fprintf(w, "converted %s to %s\n", r.Source, r.Target)
	fmt.Fprintf(w, "  image      %s (%s)\n", r.Digest, mediaTypeName(r.MediaType))
	var data uint64
	for _, p := range r.Platforms {
		var dict uint64
		for _, l := range p.Layers {
			dict += l.DictChunks
		}
		data += p.DataBytes
		fmt.Fprintf(w, "  platform   %s, %s: %s of source layers (as stored) became %s of Nydus blobs and a %s bootstrap\n",
			p.Platform, plural(len(p.Layers), "layer"), humanSize(p.SourceBytes), humanSize(p.BlobBytes), humanSize(p.BootstrapSize))
		fmt.Fprintf(w, "  dedup      %s of file data in %d chunks, %d of them repeats stored once (%d found in lower layers)\n",
			humanSize(p.DataBytes), p.Chunks, p.DedupChunks, dict)
		if len(p.BackendBlobs) > 0 {
			var skipped int
			for _, b := range p.BackendBlobs {
				if b.Skipped {
					skipped++
				}
			}
			fmt.Fprintf(w, "  backend    %s stored in the storage backend (%d already there), e.g. %s; the image holds only the bootstrap layer\n",
				plural(len(p.BackendBlobs), "blob"), skipped, p.BackendBlobs[0].Location)
		}
	}
	if c := r.BuildCache; c != nil {
		fmt.Fprintf(w, "  cache      %s reused from %s (not fetched, not converted), %d converted; %s kept\n",
			plural(c.Hits, "layer"), c.Ref, c.Misses, plural(c.Records, "record"))
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "  skipped    %s that are not images (attestations, artifacts)\n", plural(len(r.Skipped), "index entry"))
	}
	t := r.Timings
	line := fmt.Sprintf("  time       %s (resolve %s, convert %s, publish %s)",
		humanSeconds(t.Total), humanSeconds(t.Resolve), humanSeconds(t.Convert), humanSeconds(t.Publish))
	if s := humanSpeed(data, t.Convert); s != "" {
		line += ", " + s + " of file data"
	}
	fmt.Fprintln(w, line)
}
