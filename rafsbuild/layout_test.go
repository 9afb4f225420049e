package rafsbuild

import (
	"testing"

	"github.com/nydus-go/nydusify/rafs"
)

// TestAllocatorUpstreamVectors replays upstream's test_set_v6_offset
// (builder/src/core/v6.rs): 32-byte compact inodes, cursor starting at 0.
func TestAllocatorUpstreamVectors(t *testing.T) {
	a := newAllocator(rafs.BlockSize)
	a.inodeSize, a.cursor = rafs.InodeCompactSize, 0

	reg := &node{entry: Entry{Mode: rafs.ModeReg | 0o644}}
	a.placeNonDir(reg, rafs.DefaultChunkSize)
	if reg.offset != 0 || reg.dataLay != rafs.LayoutChunkBased || a.cursor != 32 {
		t.Fatalf("regular file: offset %d layout %d cursor %d", reg.offset, reg.dataLay, a.cursor)
	}
	steps := []struct {
		dsize, offset, dirents, cursor uint64
		layout                         int
	}{
		{4064, 4096, 8192, 8192, rafs.LayoutFlatInline},
		{4096, 32, 8192, 8192 + 4096, rafs.LayoutFlatPlain},
		{8160, 8192 + 4096, 8192 + 4096 + 4096, 8192 + 4096 + 8192, rafs.LayoutFlatInline},
		{8161, 64, 8192 + 4096 + 8192, 8192 + 4096 + 8192 + 8192, rafs.LayoutFlatPlain},
		{4096 + 3968, 96, 8192 + 4096 + 8192 + 8192, 8192 + 4096 + 8192 + 8192 + 4096, rafs.LayoutFlatInline},
		{4096 + 2048, 8192 + 4096 + 8192 + 8192 + 4096, 8192 + 4096 + 8192 + 8192 + 4096 + 4096, 8192 + 4096 + 8192 + 8192 + 4096 + 8192, rafs.LayoutFlatInline},
	}
	for i, s := range steps {
		dir := &node{entry: Entry{Mode: rafs.ModeDir | 0o755}}
		a.placeWithTail(dir, s.dsize)
		if dir.dataLay != s.layout || dir.offset != s.offset || a.cursor != s.cursor {
			t.Fatalf("step %d (d_size %d): layout %d offset %d cursor %d; want %d %d %d",
				i, s.dsize, dir.dataLay, dir.offset, a.cursor, s.layout, s.offset, s.cursor)
		}
		if s.dirents != 0 && dir.dataOff != s.dirents {
			t.Fatalf("step %d: dirents at %d, want %d", i, dir.dataOff, s.dirents)
		}
	}
}

// TestPackDirents checks the block split rule: a block ends when the next
// 12-byte record plus name would not fit (§1.10), and "." / ".." sort by
// raw bytes among the children.
func TestPackDirents(t *testing.T) {
	dir := &node{entry: Entry{Mode: rafs.ModeDir}}
	for _, name := range []string{"!bang", "-dash", "a", "z"} {
		dir.children = append(dir.children, &node{name: name})
	}
	var names []string
	for _, d := range dirents(dir) {
		names = append(names, d.name)
	}
	if got := names; len(got) != 6 || got[0] != "!bang" || got[1] != "-dash" || got[2] != "." || got[3] != ".." || got[4] != "a" {
		t.Fatalf("dirent order %q", got)
	}
	// 4096 = 12+1 (.) + 12+2 (..) + n entries; fill exactly one block.
	ents := []dirent{{name: "."}, {name: ".."}}
	used := 12 + 1 + 12 + 2
	for used+12+100 <= rafs.BlockSize {
		ents = append(ents, dirent{name: string(make([]byte, 100))})
		used += 112
	}
	starts, size := packDirents(ents, rafs.BlockSize)
	if len(starts) != 1 || size != uint64(used) {
		t.Fatalf("one block: starts %v size %d, want [0] %d", starts, size, used)
	}
	ents = append(ents, dirent{name: string(make([]byte, rafs.BlockSize-used-12+1))})
	starts, size = packDirents(ents, rafs.BlockSize)
	if len(starts) != 2 || starts[1] != len(ents)-1 || size != rafs.BlockSize+uint64(12+rafs.BlockSize-used-12+1) {
		t.Fatalf("overflow: starts %v size %d", starts, size)
	}
}
