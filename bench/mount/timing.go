package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// dropCaches drops the page cache if the kernel let us at the start.
func (b *bench) dropCaches() {
	if b.dropped && !dropCaches() {
		b.logf("warning: dropping the page cache failed this time")
	}
}

// dropCaches writes dirty pages back and drops the page, dentry and inode
// caches, reporting whether the kernel allowed it.
func dropCaches() bool {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0) == nil
}

// timeWalk walks root as `ls -lR` does without its xattr queries: ReadDir
// of every directory and Lstat of every entry. It returns the entries seen
// (root excluded) and the seconds taken.
func timeWalk(ctx context.Context, root string) (int, float64, error) {
	start := time.Now()
	n := 0
	var walk func(dir string) error
	walk = func(dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			st, err := os.Lstat(p)
			if err != nil {
				return err
			}
			n++
			if st.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk(root)
	return n, time.Since(start).Seconds(), err
}

type readStats struct {
	files int
	bytes int64
}

// timeRead reads every regular file below root to the end, readers files
// at a time, and returns what it read and the seconds taken, walk included.
func timeRead(ctx context.Context, root string) (readStats, float64, error) {
	start := time.Now()
	paths := make(chan string, 256)
	var (
		files, bytes atomic.Int64
		errOnce      sync.Once
		firstErr     error
		failed       = make(chan struct{})
		wg           sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() {
			firstErr = err
			close(failed)
		})
	}
	for range readers {
		wg.Go(func() {
			for p := range paths {
				n, err := readFile(p)
				if err != nil {
					fail(err)
					continue
				}
				files.Add(1)
				bytes.Add(n)
			}
		})
	}
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		select {
		case paths <- p:
			return nil
		case <-failed:
			return errors.New("a read failed")
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(paths)
	wg.Wait()
	secs := time.Since(start).Seconds()
	if firstErr != nil {
		return readStats{}, 0, firstErr
	}
	if walkErr != nil {
		return readStats{}, 0, walkErr
	}
	return readStats{files: int(files.Load()), bytes: bytes.Load()}, secs, nil
}

func readFile(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	if err != nil {
		return n, fmt.Errorf("reading %s: %w", p, err)
	}
	return n, nil
}
