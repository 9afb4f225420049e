package rafs

import (
	"errors"
	"fmt"
	"strconv"
)

// ParseChunkSize parses a chunk size as `nydus-image --chunk-size` and
// nydusify's --fs-chunk-size take it: a number in Go syntax ("0x100000",
// "1048576", "0o4000000"), which CheckChunkSize must accept.
func ParseChunkSize(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		if ne := (*strconv.NumError)(nil); errors.As(err, &ne) {
			err = ne.Err
		}
		return 0, fmt.Errorf("invalid chunk size %q: %w", s, err)
	}
	if err := CheckChunkSize(uint32(n)); err != nil {
		return 0, err
	}
	return uint32(n), nil
}

// CheckChunkSize reports whether cs is a chunk size RAFS allows: a power of
// two from MinChunkSize to MaxChunkSize.
func CheckChunkSize(cs uint32) error {
	if cs < MinChunkSize || cs > MaxChunkSize || cs&(cs-1) != 0 {
		return fmt.Errorf("invalid chunk size %#x: must be a power of two from %#x to %#x", cs, MinChunkSize, MaxChunkSize)
	}
	return nil
}
