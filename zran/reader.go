package zran

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// WindowSize is the DEFLATE window: a back-reference reaches at most this
// far, so this much preceding output is all a restart point needs.
const WindowSize = 32 << 10

const (
	maxMatch = 258
	// histSize is the output buffer: the window plus room to decode ahead.
	// Everything the reader holds is fixed in size, whatever the input.
	histSize = WindowSize + 128<<10
	// outSlack is the room kept free at the end of the output buffer while
	// decoding: one whole match plus the 8-byte overrun of the wide copy.
	outSlack = maxMatch + 8
	inSize   = 64 << 10
	// inKeep is how many consumed input bytes a refill keeps in front of
	// the unread ones, so the byte holding a block end's pending bits is
	// still at hand.
	inKeep = 8
)

// Errors of the decoder. Each is wrapped with the input offset where it was
// found.
var (
	ErrNotGzip           = errors.New("not gzip: bad magic bytes")
	ErrHeader            = errors.New("invalid gzip header")
	ErrChecksum          = errors.New("gzip CRC-32 mismatch")
	ErrSize              = errors.New("gzip ISIZE mismatch")
	ErrTrailingGarbage   = errors.New("garbage after the last gzip member")
	ErrBlockType         = errors.New("invalid deflate block type 3")
	ErrStoredLength      = errors.New("stored block length does not match its complement")
	ErrSymbol            = errors.New("invalid literal/length or distance symbol")
	ErrDistance          = errors.New("distance too far back")
	ErrCodeLengths       = errors.New("invalid code lengths in dynamic block header")
	ErrMissingEndOfBlock = errors.New("dynamic block has no end-of-block code")
	// ErrReservedFlags comes with ErrHeader: RFC 1952 makes reserved flag
	// bits an error (Go's compress/gzip ignores them).
	ErrReservedFlags = errors.New("reserved flag bits set")
)

// Checkpoint is a point where a decoder can restart: the end of a deflate
// block, or the start of a member's deflate data just after its header.
type Checkpoint struct {
	In       int64  // first whole input byte after the point (zlib's total_in)
	Bits     uint8  // 0-7 bits of the byte at In-1 not yet used: its top Bits bits
	PrevByte byte   // the byte at In-1 (meaningful when Bits > 0)
	Out      int64  // output offset of the point
	Window   []byte // the output of this member before the point, at most WindowSize bytes; valid only during the callback
	// Final: the block just ended was its member's last; a gzip trailer
	// follows, so raw inflation cannot restart here (docs/zran.md, "Restart points").
	Final bool
	// MemberStart: the point is the start of a member's deflate data.
	MemberStart bool
}

type state uint8

const (
	stHeader state = iota
	stBlock
	stStored
	stHuffman
	stTrailer
	stNext
	stDone
)

// Reader decompresses a gzip stream of one or more members (RFC 1952,
// RFC 1951), checking each member's CRC-32 and ISIZE, and reports every
// restart point to a callback. Its memory is fixed whatever the input.
type Reader struct {
	src    io.Reader
	srcErr error

	in     []byte // input buffer; in[ip:iend] not yet read into bits
	ip     int
	iend   int
	inBase int64 // input offset of in[0]

	bits  uint64 // bit buffer, next bit lowest; bits above nbits are input bytes from in[ip:]
	nbits uint

	hist        []byte // output; hist[:w] is decoded, hist[r:w] not yet handed out
	w, r        int
	outBase     int64 // output offset of hist[0]
	memberStart int   // hist index of the current member's first output byte (may be negative)

	state  state
	final  bool // the current block is its member's last
	stored int  // bytes left in the current stored block
	lit    *[litTab]uint32
	dist   *[distTab]uint32
	litDyn [litTab]uint32
	dstDyn [distTab]uint32

	crc      uint32
	crcFrom  int  // hist index from which output is not yet in crc
	crcValid bool // the member was decoded from its start, so its trailer is checked

	onPoint func(Checkpoint)
	err     error
}

// NewReader returns a Reader of the gzip stream src. onPoint, if not nil,
// is called at every restart point, in stream order, before the output
// that follows the point is returned by Read.
func NewReader(src io.Reader, onPoint func(Checkpoint)) *Reader {
	z := newReader(src, onPoint)
	z.state = stHeader
	return z
}

// NewResumeReader continues decoding at cp, a checkpoint a Reader reported
// (Window included); src must yield the stream's bytes from cp.In on. The
// output starts at cp.Out. The member that holds cp is not checked against
// its CRC-32 and ISIZE (only part of it is decoded); later members are.
// onPoint is as for NewReader.
func NewResumeReader(src io.Reader, cp Checkpoint, onPoint func(Checkpoint)) (*Reader, error) {
	if cp.Bits > 7 || len(cp.Window) > WindowSize || cp.In < 0 || cp.Out < int64(len(cp.Window)) {
		return nil, fmt.Errorf("zran: invalid checkpoint (in %d, bits %d, out %d, window %d)", cp.In, cp.Bits, cp.Out, len(cp.Window))
	}
	z := newReader(src, onPoint)
	z.inBase = cp.In - inKeep
	z.ip, z.iend = inKeep, inKeep
	z.in[inKeep-1] = cp.PrevByte
	z.bits = uint64(cp.PrevByte >> (8 - cp.Bits))
	z.nbits = uint(cp.Bits)
	z.w = copy(z.hist, cp.Window)
	z.r, z.crcFrom = z.w, z.w
	z.outBase = cp.Out - int64(z.w)
	z.state = stBlock
	if cp.Final {
		z.state = stTrailer
	}
	return z, nil
}

func newReader(src io.Reader, onPoint func(Checkpoint)) *Reader {
	return &Reader{
		src:     src,
		in:      make([]byte, inSize),
		hist:    make([]byte, histSize),
		onPoint: onPoint,
	}
}

// InputOffset is the number of input bytes the decoder has consumed (bytes
// only partly used count as consumed, as zlib's total_in does).
func (z *Reader) InputOffset() int64 { return z.inBase + int64(z.ip) - int64(z.nbits>>3) }

// OutputOffset is the number of output bytes Read has returned so far.
func (z *Reader) OutputOffset() int64 { return z.outBase + int64(z.r) }

// Read implements io.Reader.
func (z *Reader) Read(p []byte) (int, error) {
	for z.r == z.w {
		if z.err != nil {
			return 0, z.err
		}
		z.decode()
	}
	n := copy(p, z.hist[z.r:z.w])
	z.r += n
	return n, nil
}

// WriteTo implements io.WriterTo, saving the copy through a caller buffer.
func (z *Reader) WriteTo(dst io.Writer) (int64, error) {
	var total int64
	for {
		if z.r < z.w {
			n, err := dst.Write(z.hist[z.r:z.w])
			z.r += n
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		if z.err == io.EOF {
			return total, nil
		}
		if z.err != nil {
			return total, z.err
		}
		z.decode()
	}
}

// decode produces more output into hist, or sets z.err. It is called only
// when all output so far has been handed out.
func (z *Reader) decode() {
	if z.w > len(z.hist)-outSlack-WindowSize {
		keep := min(z.w, WindowSize)
		shift := z.w - keep
		z.sumOutput()
		copy(z.hist, z.hist[shift:z.w])
		z.w, z.r, z.crcFrom = keep, keep, keep
		z.outBase += int64(shift)
		z.memberStart -= shift
	}
	start := z.w
	for z.err == nil && z.w < len(z.hist)-outSlack && (z.w == start || z.state == stHuffman || z.state == stStored) {
		var err error
		switch z.state {
		case stHeader:
			err = z.header()
		case stBlock:
			err = z.blockHeader()
		case stStored:
			err = z.storedData()
		case stHuffman:
			err = z.huffman()
		case stTrailer:
			err = z.trailer()
		case stNext:
			err = z.nextMember()
		case stDone:
			err = io.EOF
		}
		if err != nil {
			z.err = err
		}
	}
	z.sumOutput()
}

func (z *Reader) sumOutput() {
	if z.crcValid && z.crcFrom < z.w {
		z.crc = crc32.Update(z.crc, crc32.IEEETable, z.hist[z.crcFrom:z.w])
	}
	z.crcFrom = z.w
}

func (z *Reader) fail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("zran: input offset %d: %w", z.InputOffset(), err)
}

// fill reads more input, keeping the unread bytes and inKeep bytes before
// them. It returns false when the source has nothing more.
func (z *Reader) fill() bool {
	if z.srcErr != nil {
		return false
	}
	if keep := max(z.ip-inKeep, 0); keep > 0 && z.iend > len(z.in)-4096 {
		copy(z.in, z.in[keep:z.iend])
		z.ip -= keep
		z.iend -= keep
		z.inBase += int64(keep)
	}
	for range 100 {
		n, err := z.src.Read(z.in[z.iend:])
		z.iend += n
		if err != nil {
			z.srcErr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	z.srcErr = io.ErrNoProgress
	return false
}

// need makes sure the bit buffer holds at least n bits (n <= 56).
func (z *Reader) need(n uint) error {
	for z.nbits < n {
		if z.ip == z.iend && !z.fill() {
			return z.srcError()
		}
		z.bits |= uint64(z.in[z.ip]) << z.nbits
		z.ip++
		z.nbits += 8
	}
	return nil
}

// srcError is the error for input that ended too soon.
func (z *Reader) srcError() error {
	if z.srcErr == io.EOF {
		return z.fail(io.ErrUnexpectedEOF)
	}
	return z.fail(z.srcErr)
}

func (z *Reader) take(n uint) uint32 {
	v := uint32(z.bits & (1<<n - 1))
	z.bits >>= n
	z.nbits -= n
	return v
}

// alignToByte drops the bits left in a partly used byte and gives whole
// buffered bytes back to the input, for byte-level reading.
func (z *Reader) alignToByte() {
	z.ip -= int(z.nbits >> 3)
	z.bits, z.nbits = 0, 0
}

// readByte reads one byte at byte level (after alignToByte).
func (z *Reader) readByte() (byte, error) {
	if z.ip == z.iend && !z.fill() {
		return 0, z.srcError()
	}
	b := z.in[z.ip]
	z.ip++
	return b, nil
}

func (z *Reader) point(final, memberStart bool) {
	if z.onPoint == nil {
		return
	}
	in := z.InputOffset()
	cp := Checkpoint{
		In:          in,
		Bits:        uint8(z.nbits & 7),
		Out:         z.outBase + int64(z.w),
		Window:      z.hist[max(z.memberStart, z.w-WindowSize, 0):z.w],
		Final:       final,
		MemberStart: memberStart,
	}
	if cp.Bits > 0 {
		cp.PrevByte = z.in[in-1-z.inBase]
	}
	z.onPoint(cp)
}

const (
	flagHCRC    = 1 << 1
	flagExtra   = 1 << 2
	flagName    = 1 << 3
	flagComment = 1 << 4
)

// header parses a member header (RFC 1952 §2.3), including FEXTRA, FNAME,
// FCOMMENT and the FHCRC check.
func (z *Reader) header() error {
	crc := uint32(0)
	get := func() (byte, error) {
		b, err := z.readByte()
		crc = crc32.Update(crc, crc32.IEEETable, []byte{b})
		return b, err
	}
	var h [10]byte
	for i := range h {
		b, err := get()
		if err != nil {
			if i == 0 && z.inBase+int64(z.ip) == 0 {
				return fmt.Errorf("zran: %w: empty input", ErrNotGzip)
			}
			return err
		}
		h[i] = b
		if i == 1 && (h[0] != 0x1f || h[1] != 0x8b) {
			return z.fail(ErrNotGzip)
		}
	}
	if h[2] != 8 {
		return z.fail(fmt.Errorf("%w: compression method %d, want 8 (deflate)", ErrHeader, h[2]))
	}
	flags := h[3]
	if flags&0xe0 != 0 {
		return z.fail(fmt.Errorf("%w: %w: %#x", ErrHeader, ErrReservedFlags, flags&0xe0))
	}
	if flags&flagExtra != 0 {
		var n int
		for i := range 2 {
			b, err := get()
			if err != nil {
				return err
			}
			n |= int(b) << (8 * i)
		}
		for range n {
			if _, err := get(); err != nil {
				return err
			}
		}
	}
	for _, f := range []byte{flagName, flagComment} {
		if flags&f == 0 {
			continue
		}
		for {
			b, err := get()
			if err != nil {
				return err
			}
			if b == 0 {
				break
			}
		}
	}
	if flags&flagHCRC != 0 {
		want := uint16(crc)
		lo, err := z.readByte()
		if err != nil {
			return err
		}
		hi, err := z.readByte()
		if err != nil {
			return err
		}
		if got := uint16(lo) | uint16(hi)<<8; got != want {
			return z.fail(fmt.Errorf("%w: header CRC-16 %#04x, computed %#04x", ErrHeader, got, want))
		}
	}
	z.memberStart = z.w
	z.crc, z.crcFrom, z.crcValid = 0, z.w, true
	z.state = stBlock
	z.point(false, true)
	return nil
}

// blockHeader reads a block header (RFC 1951 §3.2.3) and, for a dynamic
// block, its code tables (§3.2.7).
func (z *Reader) blockHeader() error {
	if err := z.need(3); err != nil {
		return err
	}
	z.final = z.take(1) == 1
	switch z.take(2) {
	case 0:
		z.bits >>= z.nbits & 7
		z.nbits -= z.nbits & 7
		if err := z.need(32); err != nil {
			return err
		}
		n, nn := z.take(16), z.take(16)
		if n != ^nn&0xffff {
			return z.fail(ErrStoredLength)
		}
		z.stored = int(n)
		z.state = stStored
		return nil
	case 1:
		z.lit, z.dist = &fixedLit, &fixedDist
	case 2:
		if err := z.dynamicTables(); err != nil {
			return err
		}
		z.lit, z.dist = &z.litDyn, &z.dstDyn
	default:
		return z.fail(ErrBlockType)
	}
	z.state = stHuffman
	return nil
}

var clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (z *Reader) dynamicTables() error {
	if err := z.need(14); err != nil {
		return err
	}
	nlit := int(z.take(5)) + 257
	ndist := int(z.take(5)) + 1
	nclen := int(z.take(4)) + 4
	if nlit > 286 || ndist > 30 {
		return z.fail(fmt.Errorf("%w: %d literal/length and %d distance codes", ErrCodeLengths, nlit, ndist))
	}
	var clLens [19]uint8
	for i := range nclen {
		if err := z.need(3); err != nil {
			return err
		}
		clLens[clOrder[i]] = uint8(z.take(3))
	}
	var clTab [1 << clBits]uint32
	var clSyms [19]uint32
	for i := range clSyms {
		clSyms[i] = uint32(i) << 16
	}
	if err := buildTable(clTab[:], clLens[:], clBits, clSyms[:]); err != nil {
		return z.fail(fmt.Errorf("%w: code length code: %w", ErrCodeLengths, err))
	}
	var lens [286 + 30]uint8
	for i := 0; i < nlit+ndist; {
		if err := z.need(7 + 7); err != nil {
			// The last code may be short near the end of input; try with what is there.
			if z.nbits == 0 {
				return err
			}
		}
		e := clTab[z.bits&(1<<clBits-1)]
		n := uint(e & 31)
		if e&entryInvalid != 0 || n > z.nbits {
			if n > z.nbits {
				return z.srcError()
			}
			return z.fail(fmt.Errorf("%w: invalid code length code", ErrCodeLengths))
		}
		z.take(n)
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return z.fail(fmt.Errorf("%w: repeat with no previous length", ErrCodeLengths))
			}
			if err := z.need(2); err != nil {
				return err
			}
			rep, val = 3+int(z.take(2)), lens[i-1]
		case 17:
			if err := z.need(3); err != nil {
				return err
			}
			rep = 3 + int(z.take(3))
		default:
			if err := z.need(7); err != nil {
				return err
			}
			rep = 11 + int(z.take(7))
		}
		if i+rep > nlit+ndist {
			return z.fail(fmt.Errorf("%w: repeat past the last code", ErrCodeLengths))
		}
		for range rep {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		return z.fail(ErrMissingEndOfBlock)
	}
	if err := buildTable(z.litDyn[:], lens[:nlit], litBits, litSymbols[:]); err != nil {
		return z.fail(fmt.Errorf("%w: literal/length code: %w", ErrCodeLengths, err))
	}
	if err := buildTable(z.dstDyn[:], lens[nlit:nlit+ndist], distBits, distSymbols[:]); err != nil {
		return z.fail(fmt.Errorf("%w: distance code: %w", ErrCodeLengths, err))
	}
	return nil
}

// storedData copies a stored block's bytes to the output.
func (z *Reader) storedData() error {
	// Whole bytes still in the bit buffer come first.
	for z.stored > 0 && z.nbits >= 8 && z.w < len(z.hist)-outSlack {
		z.hist[z.w] = byte(z.take(8))
		z.w++
		z.stored--
	}
	if z.nbits >= 8 {
		if z.stored == 0 {
			z.endBlock()
		}
		return nil
	}
	// The buffer holds no whole byte now; any bits above nbits are the bytes at ip.
	z.bits, z.nbits = 0, 0
	for z.stored > 0 && z.w < len(z.hist)-outSlack {
		if z.ip == z.iend && !z.fill() {
			return z.srcError()
		}
		n := copy(z.hist[z.w:min(z.w+z.stored, len(z.hist)-outSlack)], z.in[z.ip:z.iend])
		z.w += n
		z.ip += n
		z.stored -= n
	}
	if z.stored == 0 {
		z.endBlock()
	}
	return nil
}

func (z *Reader) endBlock() {
	z.point(z.final, false)
	if z.final {
		z.state = stTrailer
	} else {
		z.state = stBlock
	}
}

// trailer checks the member's CRC-32 and ISIZE (RFC 1952 §2.3.1).
func (z *Reader) trailer() error {
	z.alignToByte()
	var t [8]byte
	for i := range t {
		b, err := z.readByte()
		if err != nil {
			return err
		}
		t[i] = b
	}
	if z.crcValid {
		z.sumOutput()
		if got := binary.LittleEndian.Uint32(t[:4]); got != z.crc {
			return z.fail(fmt.Errorf("%w: trailer says %#08x, data has %#08x", ErrChecksum, got, z.crc))
		}
		size := uint32(z.w - z.memberStart)
		if got := binary.LittleEndian.Uint32(t[4:]); got != size {
			return z.fail(fmt.Errorf("%w: trailer says %d, data has %d (mod 2^32)", ErrSize, got, size))
		}
	}
	z.state = stNext
	return nil
}

// nextMember ends the stream at end of input or goes on with the next
// member, which must start with the gzip magic bytes.
func (z *Reader) nextMember() error {
	if z.ip == z.iend && !z.fill() {
		if z.srcErr == io.EOF {
			z.state = stDone
			return nil
		}
		return z.fail(z.srcErr)
	}
	if z.in[z.ip] != 0x1f {
		return z.fail(ErrTrailingGarbage)
	}
	if z.ip+1 == z.iend && !z.fill() {
		return z.fail(ErrTrailingGarbage)
	}
	if z.in[z.ip+1] != 0x8b {
		return z.fail(ErrTrailingGarbage)
	}
	z.state = stHeader
	return nil
}
