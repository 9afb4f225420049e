package zran

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Policy decides when a chunk gets a new context (docs/zran.md, "Contexts
// and the policy"). Upstream derives all three from the default 1 MiB chunk size,
// whatever the configured chunk size.
type Policy struct {
	MinComp   uint64 // a context already this long (compressed) may be cut for a gap
	MaxComp   uint64 // a new context once the current one spans MaxComp/2 compressed
	MaxUncomp uint64 // ... or would span MaxUncomp uncompressed with the next chunk
}

// DefaultPolicy is upstream's: 512 KiB, 1 MiB, 2 MiB.
var DefaultPolicy = Policy{MinComp: 512 << 10, MaxComp: 1 << 20, MaxUncomp: 2 << 20}

// Chunk says where a chunk's bytes are: Size bytes at Offset of context
// Context's output. CompOffset and CompSize are the input the decoder had
// consumed when the chunk began and while it was read (upper bounds, as
// the decoder reads ahead of its consumer; monotonic, so the ranges of
// successive chunks are sorted and disjoint).
type Chunk struct {
	Context    uint32
	Offset     uint32
	CompOffset uint64
	CompSize   uint32
	Size       uint32
}

// Index is what a Builder produces: the contexts, their windows
// concatenated in context order (the dictionary table), and the stream's
// sizes.
type Index struct {
	Contexts []Context
	dicts    *dictStore
	InSize   int64 // bytes of gzip input
	OutSize  int64 // bytes of decompressed output
}

// Builder decompresses a gzip stream for a consumer (its Read) and builds
// the contexts for the chunks the consumer marks with BeginChunk and
// EndChunk, following a Policy. Windows are written to a file in the
// directory given to NewBuilder (or kept in memory when it is ""), so
// memory does not grow with the stream.
type Builder struct {
	z      *Reader
	policy Policy

	// pending are restart points the consumer has not reached yet, oldest
	// first, with windows copied; latest is the newest one it has reached.
	pending []point
	latest  *point
	free    [][]byte

	ctxs     []Context
	dicts    *dictStore
	cur      int   // current context, -1 before the first chunk
	curFrom  int64 // In of the point the current context starts at
	chunkOut int64
	chunkIn  int64
	inChunk  bool
	// members are (output, input) offsets where members' deflate data
	// start, the first of each output offset, from the end of the last
	// settled context on; settled contexts have had the member-end fix.
	members [][2]int64
	settled int
	err     error
}

type point struct {
	cp  Checkpoint
	buf []byte
}

// NewBuilder returns a Builder over the gzip stream src. spillDir, if not
// "", holds a temporary file for the windows, removed by Close.
func NewBuilder(src io.Reader, policy Policy, spillDir string) (*Builder, error) {
	if policy.MaxComp == 0 || policy.MaxUncomp == 0 {
		return nil, errors.New("zran: policy limits must not be zero")
	}
	d, err := newDictStore(spillDir)
	if err != nil {
		return nil, err
	}
	b := &Builder{policy: policy, dicts: d, cur: -1}
	b.z = NewReader(src, b.onPoint)
	return b, nil
}

func (b *Builder) onPoint(cp Checkpoint) {
	if cp.MemberStart && (len(b.members) == 0 || b.members[len(b.members)-1][0] != cp.Out) {
		b.members = append(b.members, [2]int64{cp.Out, cp.In})
	}
	if cp.Final {
		return // a gzip trailer follows: no restart here (docs/zran.md, "Restart points")
	}
	if n := len(b.pending); n > 0 && b.pending[n-1].cp.Out == cp.Out {
		// Same output offset (empty blocks): the newer point replaces the
		// older, so a run of empty blocks holds one window, not one each.
		buf := append(b.pending[n-1].buf[:0], cp.Window...)
		cp.Window = buf
		b.pending[n-1] = point{cp: cp, buf: buf}
		return
	}
	var buf []byte
	if n := len(b.free); n > 0 {
		buf, b.free = b.free[n-1][:0], b.free[:n-1]
	}
	buf = append(buf, cp.Window...)
	cp.Window = buf
	b.pending = append(b.pending, point{cp: cp, buf: buf})
}

// Read hands out the decompressed stream.
func (b *Builder) Read(p []byte) (int, error) { return b.z.Read(p) }

// promote makes the newest point the consumer has reached the latest.
func (b *Builder) promote() {
	pos := b.z.OutputOffset()
	i := 0
	for i < len(b.pending) && b.pending[i].cp.Out <= pos {
		if b.latest != nil {
			b.free = append(b.free, b.latest.buf)
		}
		p := b.pending[i]
		b.latest = &p
		i++
	}
	b.pending = append(b.pending[:0], b.pending[i:]...)
}

// BeginChunk marks the start of a chunk of at most maxChunk bytes at the
// consumer's position and returns the index of the context it will be
// read from.
func (b *Builder) BeginChunk(maxChunk uint64) (uint32, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.inChunk {
		return 0, errors.New("zran: BeginChunk inside a chunk")
	}
	b.promote()
	in, out := b.z.InputOffset(), b.z.OutputOffset()
	if b.cur < 0 {
		if err := b.newContext(); err != nil {
			return 0, err
		}
	} else {
		c := &b.ctxs[b.cur]
		comp := uint64(in) - c.InOffset
		uncomp := uint64(out) - c.OutOffset
		fresh := b.latest.cp.In != b.curFrom // a block boundary passed since the context began
		if fresh && (comp >= b.policy.MaxComp/2 || uncomp+maxChunk >= b.policy.MaxUncomp ||
			comp > 2*uint64(c.InLen) && uint64(c.InLen) > b.policy.MinComp) {
			if err := b.newContext(); err != nil {
				return 0, err
			}
		}
	}
	b.chunkIn, b.chunkOut, b.inChunk = in, out, true
	return uint32(b.cur), nil
}

func (b *Builder) newContext() error {
	if b.latest == nil {
		return errors.New("zran: no restart point before the chunk; read the stream before BeginChunk")
	}
	if len(b.ctxs) >= 1<<24 {
		return errors.New("zran: more than 2^24 contexts")
	}
	cp := b.latest.cp
	off, err := b.dicts.add(cp.Window)
	if err != nil {
		return err
	}
	b.ctxs = append(b.ctxs, Context{
		InOffset: uint64(cp.In), OutOffset: uint64(cp.Out), DictOffset: off,
		DictSize: uint32(len(cp.Window)), PrevByte: cp.PrevByte, Bits: cp.Bits,
	})
	if cp.Bits == 0 {
		b.ctxs[len(b.ctxs)-1].PrevByte = 0
	}
	b.cur, b.curFrom = len(b.ctxs)-1, cp.In
	// Contexts before the previous one are final, and the decoder has
	// passed their ends (each context has a chunk of at least one byte
	// after them), so every member start at those ends is known.
	b.settle(len(b.ctxs) - 2)
	return nil
}

// settle applies the member-end fix to the contexts before upto and drops
// the member starts no later context can end at.
func (b *Builder) settle(upto int) {
	for ; b.settled < upto; b.settled++ {
		c := &b.ctxs[b.settled]
		end := int64(c.OutOffset + uint64(c.OutLen))
		for _, m := range b.members {
			if m[0] == end && uint64(m[1]) > c.InOffset {
				// Cover the trailer, the next header and one byte of its deflate data.
				c.InLen = uint32(uint64(m[1]) + 1 - c.InOffset)
				break
			}
		}
	}
	if b.settled > 0 {
		c := b.ctxs[b.settled-1]
		end := int64(c.OutOffset + uint64(c.OutLen))
		i := 0
		for i < len(b.members) && b.members[i][0] < end {
			i++
		}
		b.members = append(b.members[:0], b.members[i:]...)
	}
}

// EndChunk ends the chunk begun by BeginChunk at the consumer's position.
func (b *Builder) EndChunk() (Chunk, error) {
	if b.err != nil {
		return Chunk{}, b.err
	}
	if !b.inChunk {
		return Chunk{}, errors.New("zran: EndChunk without BeginChunk")
	}
	b.inChunk = false
	in, out := b.z.InputOffset(), b.z.OutputOffset()
	c := &b.ctxs[b.cur]
	inLen, outLen := uint64(in)-c.InOffset, uint64(out)-c.OutOffset
	size, compSize := out-b.chunkOut, in-b.chunkIn
	if outLen > MaxContextOut || inLen > 1<<32-1 {
		b.err = fmt.Errorf("zran: context %d at output %d would span %d bytes of output (%d of input), more than the %d a reader accepts", b.cur, c.OutOffset, outLen, inLen, MaxContextOut)
		return Chunk{}, b.err
	}
	if size == 0 {
		b.err = fmt.Errorf("zran: empty chunk at output %d", out)
		return Chunk{}, b.err
	}
	if size > 1<<24 || compSize >= 1<<24 || b.chunkIn >= 1<<40 {
		b.err = fmt.Errorf("zran: chunk at output %d does not fit the chunk record (%d bytes, %d compressed, at input %d)", b.chunkOut, size, compSize, b.chunkIn)
		return Chunk{}, b.err
	}
	c.InLen, c.OutLen = uint32(inLen), uint32(outLen)
	return Chunk{
		Context: uint32(b.cur), Offset: uint32(uint64(b.chunkOut) - c.OutOffset),
		CompOffset: uint64(b.chunkIn), CompSize: uint32(compSize), Size: uint32(size),
	}, nil
}

// Finish reads the rest of the stream (checking every member's CRC-32 and
// ISIZE), fixes up contexts that end where a member ends, and returns the
// index. A context that ends at the very end of the stream cannot be
// decoded by nydusd and is an error (docs/zran.md, "member ends").
func (b *Builder) Finish() (*Index, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.inChunk {
		return nil, errors.New("zran: Finish inside a chunk")
	}
	if _, err := io.Copy(io.Discard, b.z); err != nil {
		return nil, err
	}
	total := b.z.OutputOffset()
	b.settle(len(b.ctxs))
	if n := len(b.ctxs); n > 0 {
		if c := b.ctxs[n-1]; int64(c.OutOffset+uint64(c.OutLen)) == total {
			return nil, fmt.Errorf("zran: context %d ends at the end of the stream (output %d), which nydusd cannot decode", n-1, total)
		}
	}
	return &Index{Contexts: b.ctxs, dicts: b.dicts, InSize: b.z.InputOffset(), OutSize: total}, nil
}

// Close removes the spilled windows.
func (b *Builder) Close() error { return b.dicts.close() }

// Window returns the window of context i.
func (x *Index) Window(i int) ([]byte, error) {
	c := x.Contexts[i]
	return x.dicts.read(c.DictOffset, c.DictSize)
}

// AppendTable appends the context table of the contexts keep (in that
// order, renumbered 0, 1, …; nil keeps all): their records with fresh
// dictionary offsets, then their windows (docs/zran.md, "Layouts written").
// Dropping contexts no chunk refers to keeps the count within the chunk
// count, which nydusd requires.
func (x *Index) AppendTable(dst []byte, keep []int) ([]byte, error) {
	if keep == nil {
		keep = make([]int, len(x.Contexts))
		for i := range keep {
			keep[i] = i
		}
	}
	var off uint64
	for _, i := range keep {
		c := x.Contexts[i]
		c.DictOffset = off
		off += uint64(c.DictSize)
		dst = AppendContext(dst, c)
	}
	for _, i := range keep {
		w, err := x.Window(i)
		if err != nil {
			return nil, err
		}
		dst = append(dst, w...)
	}
	return dst, nil
}

// dictStore holds windows in memory or in a temporary file.
type dictStore struct {
	f    *os.File
	mem  []byte
	size uint64
}

func newDictStore(dir string) (*dictStore, error) {
	if dir == "" {
		return &dictStore{}, nil
	}
	f, err := os.CreateTemp(dir, "zran-windows-*")
	if err != nil {
		return nil, fmt.Errorf("zran: spill file for windows: %w", err)
	}
	return &dictStore{f: f}, nil
}

func (d *dictStore) add(w []byte) (uint64, error) {
	off := d.size
	if d.f == nil {
		d.mem = append(d.mem, w...)
	} else if _, err := d.f.WriteAt(w, int64(off)); err != nil {
		return 0, fmt.Errorf("zran: spilling a window: %w", err)
	}
	d.size += uint64(len(w))
	return off, nil
}

func (d *dictStore) read(off uint64, n uint32) ([]byte, error) {
	if d.f == nil {
		return d.mem[off : off+uint64(n)], nil
	}
	b := make([]byte, n)
	if _, err := d.f.ReadAt(b, int64(off)); err != nil {
		return nil, fmt.Errorf("zran: reading a spilled window: %w", err)
	}
	return b, nil
}

func (d *dictStore) close() error {
	if d.f == nil {
		return nil
	}
	name := d.f.Name()
	err := d.f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}
