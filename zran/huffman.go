package zran

import (
	"errors"
	"math/bits"
)

// Decoding tables (docs/zran.md, "The decoder"). A DEFLATE Huffman code is read least
// significant bit first, so a table is indexed by the next bits of the
// stream as they sit in the bit buffer, which is the code bit-reversed.
// The first level is indexed by the next litBits (distBits) bits; a code
// longer than that gets a second-level table of 2^(15-litBits) entries
// indexed by the bits that follow.
//
// An entry is a uint32:
//
//	bits 0-4   length in bits of the code (the whole code, also in a
//	           second-level table; 0 in a pointer to a second level)
//	bits 8-11  extra bits that follow the code (lengths and distances)
//	bit  12    end of block
//	bit  13    pointer to a second-level table at index value
//	bit  14    invalid code (no symbol, or a symbol DEFLATE does not define)
//	bits 16-30 value: the literal byte, the base length or base distance
//	bit  31    literal
const (
	entryEOB     = 1 << 12
	entrySub     = 1 << 13
	entryInvalid = 1 << 14
	entryLiteral = 1 << 31
	entryRare    = entryEOB | entrySub | entryInvalid

	maxCodeLen = 15

	litBits  = 10
	litMask  = 1<<litBits - 1
	litSub   = 1 << (maxCodeLen - litBits)
	litTab   = 1<<litBits + 288*litSub
	distBits = 8
	distMask = 1<<distBits - 1
	distSub  = 1 << (maxCodeLen - distBits)
	distTab  = 1<<distBits + 32*distSub
	clBits   = 7
)

// symbol entries without their code length (RFC 1951 §3.2.5).
var litSymbols, distSymbols [288]uint32

func init() {
	for i := range 256 {
		litSymbols[i] = entryLiteral | uint32(i)<<16
	}
	litSymbols[256] = entryEOB
	base, extra := 3, 0
	for s := 257; s < 285; s++ {
		if s >= 265 && (s-261)%4 == 0 {
			extra++
		}
		litSymbols[s] = uint32(base)<<16 | uint32(extra)<<8
		base += 1 << extra
	}
	litSymbols[285] = 258 << 16
	litSymbols[286], litSymbols[287] = entryInvalid, entryInvalid

	base, extra = 1, 0
	for s := range 30 {
		if s >= 4 && s%2 == 0 {
			extra++
		}
		distSymbols[s] = uint32(base)<<16 | uint32(extra)<<8
		base += 1 << extra
	}
	for s := 30; s < len(distSymbols); s++ {
		distSymbols[s] = entryInvalid
	}

	var lens [288]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	if err := buildTable(fixedLit[:], lens[:], litBits, litSymbols[:]); err != nil {
		panic(err)
	}
	for i := range 32 {
		lens[i] = 5
	}
	if err := buildTable(fixedDist[:], lens[:32], distBits, distSymbols[:]); err != nil {
		panic(err)
	}
}

var (
	fixedLit  [litTab]uint32
	fixedDist [distTab]uint32
)

var (
	errOversubscribed = errors.New("over-subscribed Huffman code")
	errIncomplete     = errors.New("incomplete Huffman code")
)

// buildTable fills t for the canonical Huffman code with code lengths lens
// (RFC 1951 §3.2.2); syms[i] is the entry of symbol i without its length.
// A code may be incomplete only when it has a single code of length 1 (or
// no code at all), as zlib and Go's inflater accept; lookups of the
// unused patterns then give an invalid entry.
func buildTable(t []uint32, lens []uint8, primary uint, syms []uint32) error {
	var count [maxCodeLen + 1]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	left := 1
	for l := 1; l <= maxCodeLen; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return errOversubscribed
		}
	}
	used := len(lens) - countZero(lens)
	if left > 0 {
		if used > 1 || used == 1 && count[1] != 1 {
			return errIncomplete
		}
		for i := range t {
			t[i] = entryInvalid
		}
	}
	var next [maxCodeLen + 1]uint32
	code := uint32(0)
	for l := 1; l <= maxCodeLen; l++ {
		code = (code + uint32(count[l-1])) << 1
		next[l] = code
	}
	size := uint32(1) << primary
	subSize := uint32(1) << (maxCodeLen - primary)
	nextSub := size
	var sub [1 << litBits]uint32 // second-level table start + 1 per first-level index; 0 = none yet
	for s, l := range lens {
		if l == 0 {
			continue
		}
		c := next[l]
		next[l]++
		rev := uint32(bits.Reverse16(uint16(c))) >> (16 - uint(l))
		e := syms[s] | uint32(l)
		if uint(l) <= primary {
			for i := rev; i < size; i += 1 << l {
				t[i] = e
			}
			continue
		}
		p := rev & (size - 1)
		if sub[p] == 0 {
			sub[p] = nextSub + 1
			t[p] = entrySub | nextSub<<16
			nextSub += subSize
		}
		off := sub[p] - 1
		for i := rev >> primary; i < subSize; i += 1 << (uint(l) - primary) {
			t[off+i] = e
		}
	}
	return nil
}

func countZero(b []uint8) int {
	n := 0
	for _, v := range b {
		if v == 0 {
			n++
		}
	}
	return n
}
