package converter

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// workPrefix starts the name of every conversion's work directory, which
// goes on with the converting process's pid: nydusify-convert-<pid>-<random>.
const workPrefix = "nydusify-convert-"

// workLock is the file in a work directory that its conversion holds an
// exclusive flock on for as long as it runs.
const workLock = ".lock"

// makeWorkDir creates this conversion's work directory below parent, named
// with the pid and locked, after removing the directories that killed
// conversions left there. done unlocks and removes it, and parent too when
// makeWorkDir created it and nothing else is left in it.
func makeWorkDir(parent string, logger logrus.FieldLogger) (dir string, done func(), err error) {
	_, statErr := os.Stat(parent)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", nil, fmt.Errorf("work directory: %w", err)
	}
	removeStaleWorkDirs(parent, logger)
	dir, err = os.MkdirTemp(parent, fmt.Sprintf("%s%d-", workPrefix, os.Getpid()))
	if err != nil {
		return "", nil, fmt.Errorf("work directory: %w", err)
	}
	lock, err := os.Create(filepath.Join(dir, workLock))
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("work directory: locking: %w", err)
	}
	return dir, func() {
		lock.Close()
		os.RemoveAll(dir)
		if errors.Is(statErr, fs.ErrNotExist) {
			os.Remove(parent) // fails, as it should, when another conversion uses it
		}
	}, nil
}

// removeStaleWorkDirs removes the work directories in parent whose
// conversion is gone: the pid in the name is not a live process, and
// nothing holds the directory's lock (a conversion in another pid
// namespace sharing the directory still does). Directories without a pid in
// their name are left alone. Failures are only logged: they must not stop
// this conversion.
func removeStaleWorkDirs(parent string, logger logrus.FieldLogger) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(e.Name(), workPrefix), "-")
		if !e.IsDir() || !strings.HasPrefix(e.Name(), workPrefix) || !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() || alive(pid) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if locked(filepath.Join(dir, workLock)) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			logger.Warnf("removing the work directory of a killed conversion: %v", err)
			continue
		}
		logger.Infof("removed %s, left by conversion process %d, which is gone", dir, pid)
	}
}

// alive reports whether pid is a process (signal 0 checks without sending;
// EPERM means it exists under another user).
func alive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// locked reports whether another process holds the lock file's flock.
func locked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false // no lock file: killed before it made one
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
