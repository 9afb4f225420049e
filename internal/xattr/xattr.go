// Package xattr reads all extended attributes of a path without following
// a final symlink, sizing buffers with the kernel and retrying when a value
// grows between the two calls.
package xattr

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Read returns the xattrs of path by name. A filesystem without xattr
// support reads as having none; a name listed but without data (removed
// since, or a user.* name the kernel refuses on a special file) is left out.
func Read(path string) (map[string]string, error) {
	list, err := call(func(b []byte) (int, error) { return unix.Llistxattr(path, b) })
	if errors.Is(err, unix.ENOTSUP) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs: %w", err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(list), "\x00") {
		if name == "" {
			continue
		}
		v, err := call(func(b []byte) (int, error) { return unix.Lgetxattr(path, name, b) })
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s: %w", name, err)
		}
		out[name] = string(v)
	}
	return out, nil
}

// call sizes the buffer with a zero-length call, then makes the call, again
// if the value grew in between (ERANGE).
func call(fn func([]byte) (int, error)) ([]byte, error) {
	for range 8 {
		n, err := fn(nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = fn(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.ERANGE
}
