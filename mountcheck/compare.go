package mountcheck

import (
	"errors"

	"github.com/nydus-go/nydusify/internal/treecmp"
)

// Compare walks the mounted tree and the expected tree want and returns
// every difference between them, sorted by path, as treecmp.Compare does
// (want is the Want side). The error is for a tree that cannot be walked or
// read, not for differences.
func Compare(m *Mount, want string, opts treecmp.Options) ([]treecmp.Diff, error) {
	return treecmp.Compare(want, m.Dir(), opts)
}

// Check mounts with mount, compares the mount with want and unmounts,
// whatever happened in between; an unmount failure or a stale mount joins
// the error.
func Check(mount func() (*Mount, error), want string, opts treecmp.Options) (_ []treecmp.Diff, err error) {
	m, err := mount()
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, m.Close()) }()
	return Compare(m, want, opts)
}
