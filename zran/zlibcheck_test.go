//go:build zlibcheck && cgo

package zran

import (
	"bytes"
	"testing"
)

// TestContextsDecodeWithZlib: every context built from the fixtures and
// the generated layers (many members, member ends inside and at chunk
// ends) decodes with the system zlib driven as nydusd drives it, to the
// stream's own bytes. Run: go test -tags zlibcheck ./zran -run Zlib
func TestContextsDecodeWithZlib(t *testing.T) {
	inputs := map[string][]byte{}
	for _, n := range []string{"zran-single-stream.tar.gz", "zran-two-streams.tar.gz", "zran-zero-file.tar.gz", "bgzip.tar.gz"} {
		inputs[n] = fixture(t, n)
	}
	tarball := genTar(t)
	inputs["gen-level-6"] = gzipStd(t, 6, tarball)
	inputs["gen-level-0"] = gzipStd(t, 0, tarball)
	inputs["gen-members-7KiB"] = gzipStd(t, 6, split(tarball, 7<<10)...)
	inputs["gen-members-512"] = gzipStd(t, 1, split(tarball, 512)...)
	var withEmpty [][]byte
	for _, p := range split(tarball, 3<<10) {
		withEmpty = append(withEmpty, p, nil)
	}
	inputs["gen-members-3KiB-and-empty"] = gzipStd(t, 6, withEmpty...)
	inputs["member-end"], _, _ = memberEndLayer(t)
	for name, gz := range inputs {
		for _, pol := range []Policy{DefaultPolicy, {MinComp: 1024, MaxComp: 2048, MaxUncomp: 4096}} {
			x, _ := buildIndex(t, gz, pol, 1<<20, 4096)
			all := decodeAll(t, gz)
			for i, c := range x.Contexts {
				w, err := x.Window(i)
				if err != nil {
					t.Fatal(err)
				}
				out, err := zlibDecodeContext(c, w, gz[c.InOffset:c.InOffset+uint64(c.InLen)])
				if err != nil {
					t.Fatalf("%s, policy %v, context %d (%+v): %v", name, pol, i, c, err)
				}
				if !bytes.Equal(out, all[c.OutOffset:c.OutOffset+uint64(c.OutLen)]) {
					t.Fatalf("%s, policy %v, context %d: zlib output differs from the stream", name, pol, i)
				}
			}
			t.Logf("%s, policy %v: %d contexts decode with zlib", name, pol, len(x.Contexts))
		}
	}
}
