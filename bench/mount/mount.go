package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nydus-go/nydusify/mountcheck"
)

// withMount runs `nydusify mount` with args on a fresh mount point and
// chunk cache directory cache, supervised by mountcheck (readiness from the
// "mounted at" line and the mount table, SIGTERM to stop, a kill and a lazy
// unmount on failure), waits until the mount is usable (its root answers
// stat and readdir), calls fn with the mount point and the time from
// process start until then, and stops the process, which must exit cleanly
// and leave nothing mounted.
func (b *bench) withMount(ctx context.Context, args []string, cache string, fn func(mnt string, d time.Duration) error) error {
	mnt := b.newPath("mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	logPath := mnt + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	p, err := mountcheck.StartProcess(ctx, b.bin, mnt, append([]string{"--cache-dir", cache}, args...),
		mountcheck.ProcessOptions{Log: logf})
	if err != nil {
		return err
	}
	if err := usable(mnt); err != nil {
		p.Kill()
		return fmt.Errorf("%w%s", err, logTail(logPath))
	}
	if err := fn(mnt, time.Since(p.Started())); err != nil {
		p.Kill()
		return fmt.Errorf("%w%s", err, logTail(logPath))
	}
	return p.Stop()
}

// usable stats the mount point and reads its root directory: what a user's
// first command does.
func usable(mnt string) error {
	if _, err := os.Stat(mnt + "/"); err != nil {
		return err
	}
	_, err := os.ReadDir(mnt)
	return err
}
