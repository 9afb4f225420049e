// Package mounttest is mountcheck for tests: every mount it makes is
// unmounted by t.Cleanup (a failed or stale unmount fails the test), a test
// is skipped, with the reason, only when the machine truly cannot mount (not
// root, no /dev/fuse, no erofs in the kernel, erofs not backed by files),
// and any other failure fails the test with the mounter's error.
//
// Like net/http/httptest, it keeps the testing package out of mountcheck.
package mounttest

import (
	"context"
	"errors"
	"testing"

	"github.com/nydus-go/nydusify/imagemount"
	"github.com/nydus-go/nydusify/internal/testenv"
	"github.com/nydus-go/nydusify/internal/treecmp"
	"github.com/nydus-go/nydusify/mountcheck"
)

// maxReported caps the differences RequireSame reports one by one.
const maxReported = 30

// FUSE mounts the image opts describe with mountcheck.FUSE, on a fresh
// directory under t.TempDir() when opts.MountPath is empty, and returns
// the mount (its Image gives imagemount's Info and Prefetched).
func FUSE(t testing.TB, opts imagemount.Options) *mountcheck.Mount {
	t.Helper()
	testenv.RequireFUSE(t)
	if opts.MountPath == "" {
		opts.MountPath = mountPoint(t)
	}
	m, err := mountcheck.FUSE(context.Background(), opts)
	if err != nil {
		t.Fatalf("FUSE mount: %v", err)
	}
	cleanup(t, m)
	return m
}

// EROFS mounts image with the kernel's erofs driver, devices (blob views)
// in blob-table order, on a fresh directory under t.TempDir(), and returns
// the mount point. See mountcheck.EROFS.
func EROFS(t testing.TB, image string, devices []string) string {
	t.Helper()
	testenv.RequireEROFS(t)
	m, err := mountcheck.EROFS(mountPoint(t), image, devices)
	if errors.Is(err, mountcheck.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	cleanup(t, m)
	return m.Dir()
}

// Adopt is mountcheck.Adopt with Close registered in t.Cleanup; call
// Close earlier to unmount mid-test.
func Adopt(t testing.TB, dir string, unmount func() error) *mountcheck.Mount {
	t.Helper()
	m := mountcheck.Adopt(dir, unmount)
	cleanup(t, m)
	return m
}

// StartProcess is mountcheck.StartProcess; a process still running when the
// test ends is stopped, and a failed stop, or a mount left by a process that
// exited on its own, fails the test.
func StartProcess(t testing.TB, bin, mountPath string, args []string, opts mountcheck.ProcessOptions) *mountcheck.Process {
	t.Helper()
	testenv.RequireFUSE(t)
	p, err := mountcheck.StartProcess(t.Context(), bin, mountPath, args, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.Exited() {
			if err := p.Stop(); err != nil {
				t.Errorf("stopping nydusify mount at the end of the test: %v", err)
			}
			return
		}
		// Stopped by the test, or exited on its own: nothing may be left.
		if mounted, err := mountcheck.Mounted(mountPath); err != nil || mounted {
			p.Kill()
			t.Errorf("nydusify mount exited, leaving %s mounted (%v)", mountPath, err)
		}
	})
	return p
}

// RequireSame compares the tree at got (a mount point) with want and
// reports each difference as a test error, the first 30 one by one. Skip,
// when given, leaves out the differences it returns true for (those the
// test knows to be expected). It fails the test if a tree cannot be read.
func RequireSame(t testing.TB, want, got string, opts treecmp.Options, skip ...func(treecmp.Diff) bool) {
	t.Helper()
	all, err := treecmp.Compare(want, got, opts)
	if err != nil {
		t.Fatalf("comparing %s with %s: %v", got, want, err)
	}
	var diffs []treecmp.Diff
outer:
	for _, d := range all {
		for _, s := range skip {
			if s(d) {
				continue outer
			}
		}
		diffs = append(diffs, d)
	}
	for i, d := range diffs {
		if i == maxReported {
			t.Errorf("... %d differences in all", len(diffs))
			break
		}
		t.Error(d)
	}
}

func mountPoint(t testing.TB) string {
	// A directory of its own, so that t.TempDir's removal runs after the
	// unmount (cleanups run last-registered first) and never walks into
	// the mount.
	return t.TempDir()
}

func cleanup(t testing.TB, m *mountcheck.Mount) {
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("unmounting %s: %v", m.Dir(), err)
		}
	})
}
