package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nydus-go/nydusify/converter"
)

func (b *bench) localfsArgs(out string) []string {
	return []string{"--backend-type", "localfs", "--backend-config", fmt.Sprintf(`{"dir":%q}`, out),
		"--bootstrap", filepath.Join(out, "img.meta")}
}

// buildImage runs `nydusify build` of src into out (bootstrap img.meta) and
// returns its wall time.
func (b *bench) buildImage(ctx context.Context, src, out string) (float64, error) {
	secs, err := b.runLogged(ctx, "build", "--source-dir", src, "--output-dir", out, "--name", "img")
	if err == nil {
		b.logf("built in %.1f s", secs)
	}
	return secs, err
}

// convert runs `nydusify convert` of source into target (extra flags
// appended) and returns its report and wall time.
func (b *bench) convert(ctx context.Context, source, target string, extra ...string) (*converter.Report, float64, error) {
	reportPath := b.newPath("convert") + ".json"
	args := append([]string{"convert", "--source", source, "--target", target, "--output-json", reportPath}, extra...)
	secs, err := b.runLogged(ctx, args...)
	if err != nil {
		return nil, 0, err
	}
	data, err := os.ReadFile(reportPath)
	if err != nil {
		return nil, 0, err
	}
	var rep converter.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, 0, fmt.Errorf("convert report %s: %w", reportPath, err)
	}
	b.logf("converted %s to %s in %.1f s", source, target, secs)
	return &rep, secs, nil
}

// runLogged runs the nydusify binary with args, its output in a log file
// whose tail goes into the error, and returns its wall time.
func (b *bench) runLogged(ctx context.Context, args ...string) (float64, error) {
	logPath := b.newPath(args[0]) + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("nydusify %s: %w%s", strings.Join(args, " "), err, logTail(logPath))
	}
	return time.Since(start).Seconds(), nil
}

// makeTree writes a deterministic tree of n entries below dir: directories
// d000, d001, … each holding up to 32 directories of 100 files of 0–1023
// bytes whose content depends only on the file's index.
func makeTree(ctx context.Context, dir string, n int) error {
	const filesPerDir, dirsPerDir = 100, 32
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	var leaf string
	for i, made := 0, 0; made < n; i++ {
		if i%filesPerDir == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			d := i / filesPerDir
			top := filepath.Join(dir, fmt.Sprintf("d%03d", d/dirsPerDir))
			if d%dirsPerDir == 0 {
				if err := os.Mkdir(top, 0o755); err != nil {
					return err
				}
				made++
			}
			leaf = filepath.Join(top, fmt.Sprintf("s%02d", d%dirsPerDir))
			if err := os.Mkdir(leaf, 0o755); err != nil {
				return err
			}
			made++
		}
		line := fmt.Sprintf("file %d of the mount benchmark\n", i)
		size := i * 131 % 1024
		data := strings.Repeat(line, size/len(line)+1)[:size]
		if err := os.WriteFile(filepath.Join(leaf, fmt.Sprintf("f%06d", i)), []byte(data), 0o644); err != nil {
			return err
		}
		made++
	}
	return nil
}
