package rafs

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"
)

func readV5Fixture(t testing.TB, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func openV5Bytes(t testing.TB, data []byte) *Reader {
	t.Helper()
	rd, err := Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

// TestV5MerkleFixtures: every one of the 54 inode digests of both upstream
// fixtures is what the §4 rules recompute, with sha256 and with blake3.
func TestV5MerkleFixtures(t *testing.T) {
	for _, fx := range v5Fixtures {
		t.Run(fx.name, func(t *testing.T) {
			rep, err := openV5Bytes(t, readV5Fixture(t, fx.path)).VerifyMerkle()
			if err != nil {
				t.Fatal(err)
			}
			if rep.Inodes != v5Records || len(rep.Mismatches) != 0 || rep.Digester != fx.digester {
				t.Fatalf("%d records, %s, mismatches %+v", rep.Inodes, rep.Digester, rep.Mismatches)
			}
			if rep.Root != rep.ComputedRoot || rep.Root == [32]byte{} {
				t.Fatalf("root %x, computed %x", rep.Root, rep.ComputedRoot)
			}
		})
	}
	// A v6 bootstrap has no Merkle tree.
	f, size := openFile(t, fixtureBoot)
	rd, err := Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.VerifyMerkle(); !errors.Is(err, ErrNoMerkleTree) {
		t.Fatalf("v6: %v", err)
	}
}

// TestV5MerkleTamper changes one byte of a v5 fixture and checks that
// verification names exactly the records the §4 rules make depend on it.
func TestV5MerkleTamper(t *testing.T) {
	orig := readV5Fixture(t, v5Sha256)
	v := openV5Bytes(t, orig).v5
	rec := func(p string) *v5Record {
		for i := range v.recs {
			if v.path(uint32(i+1)) == p {
				return &v.recs[i]
			}
		}
		t.Fatalf("no %s", p)
		return nil
	}
	tableOff := func(r *v5Record) uint64 {
		return uint64(le.Uint32(orig[v.sb.InodeTableOffset+uint64(r.index-1)*4:])) << 3
	}
	hole2 := rec("/normal-file-test/holefiles/head-hole-2")
	foo1 := rec("/symlink-test/foo1")
	manifest := rec("/normal-file-test/busybox/manifest.json")
	etc := rec("/normal-file-test/busybox/1f777dbdd68d1c4d554bc0d20e027bfef9ed2dfe2d8d5f029e958552a0e12475/etc")
	for name, c := range map[string]struct {
		off  uint64
		want []string
	}{
		// The second chunk of head-hole-2 is used by no other file.
		"chunk digest": {hole2.chunks + ChunkTableEntrySize + 7,
			[]string{"/", "/normal-file-test", "/normal-file-test/holefiles", "/normal-file-test/holefiles/head-hole-2"}},
		"symlink target": {tableOff(foo1) + V5InodeSize + V5Align8(uint64(foo1.NameSize)) + 3,
			[]string{"/", "/symlink-test", "/symlink-test/foo1"}},
		"file's stored digest":      {tableOff(manifest) + 5, []string{"/normal-file-test/busybox/manifest.json"}},
		"directory's stored digest": {tableOff(etc) + 31, []string{"/normal-file-test/busybox/1f777dbdd68d1c4d554bc0d20e027bfef9ed2dfe2d8d5f029e958552a0e12475/etc"}},
	} {
		t.Run(name, func(t *testing.T) {
			data := slices.Clone(orig)
			data[c.off] ^= 0x5a
			rep, err := openV5Bytes(t, data).VerifyMerkle()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range rep.Mismatches {
				got = append(got, m.Path)
				if m.Stored == m.Computed {
					t.Errorf("%s reported with equal digests", m.Path)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("mismatches %q, want %q", got, c.want)
			}
			if rootHit := slices.Contains(c.want, "/"); (rep.Root != rep.ComputedRoot) != rootHit {
				t.Errorf("root stored %x computed %x", rep.Root, rep.ComputedRoot)
			}
		})
	}
}
