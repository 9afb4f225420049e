package rafs

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// v5Patch is one change to the sha256 fixture: put writes a little-endian
// value of size bytes at the offset where returns.
type v5Patch struct {
	where func(v *v5Reader, data []byte) uint64
	size  int
	value uint64
	want  string
}

// recordAt returns the offset of inode index i's record.
func recordAt(v *v5Reader, data []byte, i uint32) uint64 {
	return uint64(le.Uint32(data[v.sb.InodeTableOffset+uint64(i-1)*4:])) << 3
}

func at(off uint64) func(*v5Reader, []byte) uint64 {
	return func(*v5Reader, []byte) uint64 { return off }
}

func field(i uint32, off uint64) func(*v5Reader, []byte) uint64 {
	return func(v *v5Reader, data []byte) uint64 { return recordAt(v, data, i) + off }
}

// TestV5Hostile: truncated bootstraps, cyclic or shared trees and sizes
// claiming more than the file are refused with ErrCorrupt, allocating in
// proportion to the bytes given.
func TestV5Hostile(t *testing.T) {
	orig := readV5Fixture(t, v5Sha256)
	v := openV5Bytes(t, orig).v5
	for _, n := range []int{0, 4, 80, V5SuperBlockSize, V5SuperBlockSize + 1, 0x2100, 0x2400, len(orig) - 81, len(orig) - 1} {
		expectCorrupt(t, "truncated to "+strconv.Itoa(n), orig[:n], "")
	}
	// Inode indexes (§4): 1 /, 2 /hardlink-test, 3 /normal-file-test,
	// 4 /symlink-test, 7 busybox, 27 .../etc/network, 39 head-hole-1.
	for name, p := range map[string]v5Patch{
		"dir lists the root":          {field(4, 92), 4, 1, "lists inodes 1"},
		"dir lists a sibling":         {field(3, 92), 4, 2, "listed twice"},
		"cycle to an ancestor":        {field(27, 92), 4, 3, "listed twice"},
		"children beyond the table":   {field(4, 96), 4, 1 << 30, "lists inodes"},
		"file claims 2^32-1 chunks":   {field(39, 96), 4, 0xffffffff, "beyond"},
		"name beyond the file":        {field(54, 100), 2, 255, "beyond"},
		"symlink size 65535":          {field(54, 102), 2, 0xffff, "symlink target of"},
		"inode table claims 2^31":     {at(56), 4, 1 << 31, "beyond"},
		"blob table size 2^32-1":      {at(64), 4, 0xffffffff, "beyond"},
		"ext blob entries 2^32-1":     {at(68), 4, 0xffffffff, "beyond"},
		"prefetch entries 2^32-1":     {at(60), 4, 0xffffffff, "beyond"},
		"two entries, one record":     {at(v.sb.InodeTableOffset + 4), 4, uint64(le.Uint32(orig[v.sb.InodeTableOffset:])), "overlap"},
		"record inside the tables":    {at(v.sb.InodeTableOffset + 8), 4, 1025, "inside the tables"},
		"root is a file":              {field(1, 60), 4, 0o100644, ""},
		"unknown file type":           {field(5, 60), 4, 0o170644, "mode"},
		"nlink 0":                     {field(5, 88), 4, 0, "nlink 0"},
		"parent is not the lister":    {field(5, 32), 8, 3, "names parent"},
		"chunk names blob 7":          {func(v *v5Reader, data []byte) uint64 { return v.recs[38].chunks + 32 }, 4, 7, ""},
		"chunk beyond the blob":       {func(v *v5Reader, data []byte) uint64 { return v.recs[43].chunks + 56 }, 8, 1 << 40, "beyond the blob"},
		"version 0x600":               {at(4), 4, 0x600, "version"},
		"chunk size 3":                {at(12), 4, 3, "chunk size"},
		"two compressors":             {at(16), 8, 0x81 | 0x8, "compressor"},
		"a hardlink differs in size":  {field(6, 64), 8, 945, "differ"},
		"duplicate name in directory": {field(50, 100), 2, 3, "twice in directory"},
	} {
		data := slices.Clone(orig)
		off := p.where(v, data)
		for k := range p.size {
			data[off+uint64(k)] = byte(p.value >> (8 * k))
		}
		expectCorrupt(t, name, data, p.want)
	}
}

// TestV5EmptyTablesAnywhere: an empty table's offset may point anywhere, as
// upstream checks only tables with entries (found by FuzzV5Bootstrap, which
// hit a panic slicing at such an offset).
func TestV5EmptyTablesAnywhere(t *testing.T) {
	data := slices.Clone(readV5Fixture(t, v5Sha256))
	le.PutUint64(data[40:], 1<<60) // prefetch table offset; 0 entries
	if le.Uint32(data[60:]) != 0 {
		t.Fatal("the fixture has a prefetch table")
	}
	rd := openV5Bytes(t, data)
	if p, err := rd.PrefetchTable(); err != nil || len(p) != 0 {
		t.Fatalf("prefetch table %v, %v", p, err)
	}
}

func expectCorrupt(t *testing.T, name string, data []byte, want string) {
	t.Helper()
	var err error
	n := allocated(func() {
		var img *Image
		if img, err = OpenImage(bytes.NewReader(data), int64(len(data)), nil); err == nil {
			img.Bootstrap().Walk(func(string, *Node) error { return nil })
		}
	})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want ErrCorrupt saying %q", name, err, want)
	}
	if n > allocBound(len(data), 0) {
		t.Errorf("%s: %d bytes allocated for %d", name, n, len(data))
	}
}
