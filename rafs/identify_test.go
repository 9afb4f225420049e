package rafs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestOpenNamesWhatItIs: before any v6 size rule, Open tells by magic what
// it was given: upstream's blob-toc blob fixture is a data blob, bytes
// opening with the RAFS v5 magic (0x52414653, docs/rafs-format.md §4) are
// read as a v5 bootstrap (here: too short to be one), and anything else is
// named as not a bootstrap at all.
func TestOpenNamesWhatItIs(t *testing.T) {
	blob, err := os.ReadFile("../testdata/nydus/toc/2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca")
	if err != nil {
		t.Fatal(err)
	}
	v5 := make([]byte, 8192)
	binary.LittleEndian.PutUint32(v5, 0x52414653)
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"upstream data blob": {blob, "a Nydus data blob"},
		"v5 bootstrap":       {v5, "RAFS v5 bootstrap"},
		"text":               {[]byte(strings.Repeat("root:x:0:0\n", 500)), "not a RAFS bootstrap"},
		"empty":              {nil, "not a RAFS bootstrap"},
	} {
		_, err := Open(bytes.NewReader(c.data), int64(len(c.data)))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open = %v, want an ErrCorrupt saying %q", name, err, c.want)
		}
	}
}
