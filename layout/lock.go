package layout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LockFile is the file in a layout directory that writers lock (flock(2), exclusive) while
// they read, change and replace index.json, so concurrent writers, in this process or in
// others, never lose each other's entries. It is created on first use and left in place:
// removing a lock file others may hold open would let two writers lock different files.
const LockFile = "index.json.lock"

// lockPoll bounds how long a waiting writer sleeps between attempts to take the lock.
const lockPoll = 20 * time.Millisecond

// lock takes the layout's index.json lock, waiting until it is free or ctx is done, and
// returns the function that releases it. flock locks belong to the open file description,
// so goroutines of one process exclude each other as separate processes do.
func lock(ctx context.Context, dir string) (unlock func() error, err error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking index.json: %w", err)
	}
	fd := int(f.Fd())
	for wait := time.Millisecond; ; wait = min(2*wait, lockPoll) {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking index.json: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("locking index.json: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	// Closing the file releases the lock.
	return f.Close, nil
}
