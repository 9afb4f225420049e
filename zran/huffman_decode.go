package zran

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// huffman decodes the symbols of a fixed or dynamic block until the block
// ends or the output buffer is full. The state lives in locals while it
// runs: a 64-bit bit buffer refilled eight bytes at a time, so one refill
// covers a whole length/distance pair (at most 15+5+15+13 = 48 bits).
func (z *Reader) huffman() error {
	in := z.in
	ip, iend := z.ip, z.iend
	bits, nbits := z.bits, z.nbits
	hist := z.hist
	w := z.w
	wlimit := len(hist) - outSlack
	lit, dist := z.lit, z.dist
	var err error

	for w < wlimit {
		if nbits < 48 {
			if iend-ip >= 8 {
				bits |= binary.LittleEndian.Uint64(in[ip:]) << nbits
				ip += int(63-nbits) >> 3
				nbits |= 56
			} else {
				z.ip, z.bits, z.nbits = ip, bits, nbits
				if z.iend-z.ip < 8 {
					z.fill()
				}
				for z.nbits <= 56 && z.ip < z.iend {
					z.bits |= uint64(z.in[z.ip]) << z.nbits
					z.ip++
					z.nbits += 8
				}
				in, ip, iend, bits, nbits = z.in, z.ip, z.iend, z.bits, z.nbits
				if iend-ip >= 8 {
					continue
				}
			}
		}
		e := lit[bits&litMask]
		if e&entrySub != 0 {
			e = lit[e>>16+uint32(bits>>litBits)&(litSub-1)]
		}
		n := uint(e & 31)
		if n > nbits {
			err = errShort
			break
		}
		bits >>= n
		nbits -= n
		if int32(e) < 0 {
			hist[w] = byte(e >> 16)
			w++
			continue
		}
		if e&entryRare != 0 {
			if e&entryEOB != 0 {
				z.ip, z.iend, z.bits, z.nbits, z.w = ip, iend, bits, nbits, w
				z.endBlock()
				return nil
			}
			err = ErrSymbol
			break
		}
		x := uint(e>>8) & 15
		if x > nbits {
			err = errShort
			break
		}
		length := int(e>>16) + int(bits&(1<<x-1))
		bits >>= x
		nbits -= x

		d := dist[bits&distMask]
		if d&entrySub != 0 {
			d = dist[d>>16+uint32(bits>>distBits)&(distSub-1)]
		}
		n = uint(d & 31)
		if n > nbits {
			err = errShort
			break
		}
		bits >>= n
		nbits -= n
		if d&entryRare != 0 {
			err = ErrSymbol
			break
		}
		x = uint(d>>8) & 15
		if x > nbits {
			err = errShort
			break
		}
		off := int(d>>16) + int(bits&(1<<x-1))
		bits >>= x
		nbits -= x
		if off > w-z.memberStart {
			err = fmt.Errorf("%w: distance %d, %d bytes of history", ErrDistance, off, w-z.memberStart)
			break
		}
		src := w - off
		if off >= 8 {
			for i := 0; i < length; i += 8 {
				binary.LittleEndian.PutUint64(hist[w+i:], binary.LittleEndian.Uint64(hist[src+i:]))
			}
			w += length
			continue
		}
		end := w + length
		for w < end {
			w += copy(hist[w:end], hist[src:w])
		}
	}
	z.ip, z.iend, z.bits, z.nbits, z.w = ip, iend, bits, nbits, w
	switch err {
	case nil:
		return nil
	case errShort:
		return z.srcError()
	}
	return z.fail(err)
}

// errShort stands for input that ended inside a symbol.
var errShort = errors.New("short input")
