package tarstream

import (
	"io"
	"sync"
)

// readAhead runs r (a decompressor) in its own goroutine, filling up to
// depth buffers of size bytes ahead of the consumer, so decompression
// overlaps the tar parsing, hashing and compression downstream. Memory is
// bounded by depth × size.
func readAhead(r io.Reader, size, depth int) io.ReadCloser {
	ra := &readAheader{
		full:  make(chan []byte, depth),
		free:  make(chan []byte, depth),
		close: make(chan struct{}),
		done:  make(chan struct{}),
	}
	for range depth {
		ra.free <- make([]byte, size)
	}
	go ra.fill(r)
	return ra
}

type readAheader struct {
	full, free chan []byte
	close      chan struct{}
	done       chan struct{} // closed when fill returns
	once       sync.Once
	err        error // set by fill before it closes full
	cur        []byte
	curBuf     []byte
}

func (ra *readAheader) fill(r io.Reader) {
	defer close(ra.done)
	defer close(ra.full)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.close:
			return
		}
		n, err := fillBuf(r, buf)
		if n > 0 {
			select {
			case ra.full <- buf[:n]:
			case <-ra.close:
				return
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			ra.err = err
			return
		}
	}
}

func (ra *readAheader) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.curBuf != nil {
			ra.free <- ra.curBuf[:cap(ra.curBuf)]
			ra.curBuf = nil
		}
		buf, ok := <-ra.full
		if !ok {
			if ra.err != nil {
				return 0, ra.err
			}
			return 0, io.EOF
		}
		ra.cur, ra.curBuf = buf, buf
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the filling goroutine and waits for it to return, so the
// underlying reader may be closed afterwards.
func (ra *readAheader) Close() error {
	ra.once.Do(func() { close(ra.close) })
	<-ra.done
	return nil
}

// fillBuf reads into buf until it is full or r fails, and returns r's own
// error. Unlike io.ReadFull it never turns anything into
// io.ErrUnexpectedEOF, so a decompressor reporting a truncated stream (with
// io.ErrUnexpectedEOF) is told apart from a clean end (io.EOF).
func fillBuf(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
