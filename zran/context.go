package zran

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ContextSize is the size of one context record (docs/zran.md, "Layouts
// written").
const ContextSize = 40

// MaxContextOut is the most output one context may yield: nydusd refuses a
// larger one (docs/zran.md, "Contexts and the policy").
const MaxContextOut = 16 << 20

// Context is a restart point with the stretch of the stream decoded from
// it: feed InLen bytes from InOffset, after priming the decoder with the top
// Bits bits of PrevByte and the DictSize-byte window at DictOffset of the
// dictionary table, and it yields OutLen bytes starting at OutOffset.
type Context struct {
	InOffset   uint64
	OutOffset  uint64
	DictOffset uint64
	InLen      uint32
	OutLen     uint32
	DictSize   uint32
	PrevByte   byte
	Bits       uint8
}

// AppendContext appends the 40-byte little-endian record of c.
func AppendContext(dst []byte, c Context) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, c.InOffset)
	dst = binary.LittleEndian.AppendUint64(dst, c.OutOffset)
	dst = binary.LittleEndian.AppendUint64(dst, c.DictOffset)
	dst = binary.LittleEndian.AppendUint32(dst, c.InLen)
	dst = binary.LittleEndian.AppendUint32(dst, c.OutLen)
	dst = binary.LittleEndian.AppendUint32(dst, c.DictSize)
	return append(dst, c.PrevByte, c.Bits, 0, 0)
}

// parseContext decodes a 40-byte record.
func parseContext(b []byte) Context {
	return Context{
		InOffset:   binary.LittleEndian.Uint64(b[0:]),
		OutOffset:  binary.LittleEndian.Uint64(b[8:]),
		DictOffset: binary.LittleEndian.Uint64(b[16:]),
		InLen:      binary.LittleEndian.Uint32(b[24:]),
		OutLen:     binary.LittleEndian.Uint32(b[28:]),
		DictSize:   binary.LittleEndian.Uint32(b[32:]),
		PrevByte:   b[36],
		Bits:       b[37],
	}
}

// ErrContextTable is wrapped by every error of ParseContextTable.
var ErrContextTable = errors.New("invalid zran context table")

// ParseContextTable decodes a context table: count 40-byte records followed
// by the dictionary table, b being exactly both. It checks what a reader
// relies on: bit counts below 8, windows of at most WindowSize bytes lying
// inside the dictionary table, and ranges that do not overflow. It returns
// the records and the dictionary table (a subslice of b).
func ParseContextTable(b []byte, count uint32) ([]Context, []byte, error) {
	if uint64(count)*ContextSize > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %d records need %d bytes, table has %d", ErrContextTable, count, uint64(count)*ContextSize, len(b))
	}
	dicts := b[count*ContextSize:]
	ctxs := make([]Context, count)
	for i := range ctxs {
		c := parseContext(b[i*ContextSize:])
		switch {
		case c.Bits > 7:
			return nil, nil, fmt.Errorf("%w: context %d: %d pending bits", ErrContextTable, i, c.Bits)
		case c.DictSize > WindowSize:
			return nil, nil, fmt.Errorf("%w: context %d: window of %d bytes", ErrContextTable, i, c.DictSize)
		case c.DictOffset > uint64(len(dicts)) || uint64(c.DictSize) > uint64(len(dicts))-c.DictOffset:
			return nil, nil, fmt.Errorf("%w: context %d: window [%d, +%d) outside the %d-byte dictionary table", ErrContextTable, i, c.DictOffset, c.DictSize, len(dicts))
		case c.InOffset+uint64(c.InLen) < c.InOffset || c.OutOffset+uint64(c.OutLen) < c.OutOffset:
			return nil, nil, fmt.Errorf("%w: context %d: range overflows", ErrContextTable, i)
		case c.OutLen > MaxContextOut:
			return nil, nil, fmt.Errorf("%w: context %d: %d bytes of output, at most %d", ErrContextTable, i, c.OutLen, MaxContextOut)
		}
		ctxs[i] = c
	}
	return ctxs, dicts, nil
}

// Window returns the window of c in the dictionary table dicts, as checked
// by ParseContextTable.
func (c Context) Window(dicts []byte) []byte {
	return dicts[c.DictOffset : c.DictOffset+uint64(c.DictSize)]
}

// Checkpoint returns the restart point of c with its window, to resume
// decoding with NewResumeReader.
func (c Context) Checkpoint(dicts []byte) Checkpoint {
	return Checkpoint{In: int64(c.InOffset), Bits: c.Bits, PrevByte: c.PrevByte, Out: int64(c.OutOffset), Window: c.Window(dicts)}
}
