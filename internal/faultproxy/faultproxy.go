// Package faultproxy is a test harness: an HTTP reverse proxy on 127.0.0.1
// that forwards to a real server (a registry, an S3 endpoint) and injects
// faults into a chosen share of requests: 5xx answers, connection resets,
// bodies cut short after their headers promised more, and stalls. Tests of
// convert, mount and check put it between our code and the real server.
package faultproxy

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is a kind of fault.
type Kind int

const (
	// Status answers 503 Service Unavailable without forwarding.
	Status Kind = iota
	// Reset closes the connection without any answer (TCP RST).
	Reset
	// Truncate forwards, sends the real headers, then cuts the body off
	// halfway and closes the connection.
	Truncate
	// Stall waits Options.StallFor before forwarding (or until the client
	// gives up).
	Stall
)

func (k Kind) String() string {
	return [...]string{"status", "reset", "truncate", "stall"}[k]
}

// Options configures a Proxy.
type Options struct {
	// Rate is the share of matching requests that get a fault, 0 to 1.
	Rate float64
	// Kinds are the faults to draw from, uniformly; empty means all four.
	Kinds []Kind
	// Seed makes the fault sequence repeatable for a given request order.
	Seed uint64
	// StallFor is how long a Stall fault waits; 0 means 5s.
	StallFor time.Duration
	// Match limits faults to requests it accepts; nil matches every request.
	Match func(*http.Request) bool
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	// Host is "127.0.0.1:port", to use in place of the upstream's host.
	Host string

	srv      *http.Server
	rp       *httputil.ReverseProxy
	opts     Options
	mu       sync.Mutex // guards rng and the rate
	rng      *rand.Rand
	requests atomic.Int64
	faults   [4]atomic.Int64
}

// Start forwards 127.0.0.1:<free port> to upstream (an http:// URL).
func Start(upstream string, opts Options) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	if len(opts.Kinds) == 0 {
		opts.Kinds = []Kind{Status, Reset, Truncate, Stall}
	}
	if opts.StallFor == 0 {
		opts.StallFor = 5 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Host: ln.Addr().String(), opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x6e79647573))}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // keep the Host the client used (token realms, redirects)
		},
		ErrorLog: nopLogger,
	}
	p.srv = &http.Server{Handler: p, ErrorLog: nopLogger}
	go p.srv.Serve(ln)
	return p, nil
}

// SetRate changes the fault rate of requests from now on.
func (p *Proxy) SetRate(rate float64) {
	p.mu.Lock()
	p.opts.Rate = rate
	p.mu.Unlock()
}

// Stats returns how many requests passed through and how many faults of
// each kind were injected.
func (p *Proxy) Stats() (requests int64, faults map[Kind]int64) {
	faults = map[Kind]int64{}
	for k := range p.faults {
		faults[Kind(k)] = p.faults[k].Load()
	}
	return p.requests.Load(), faults
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() error { return p.srv.Close() }

func (p *Proxy) draw(req *http.Request) (Kind, bool) {
	if p.opts.Match != nil && !p.opts.Match(req) {
		return 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rng.Float64() >= p.opts.Rate {
		return 0, false
	}
	return p.opts.Kinds[p.rng.IntN(len(p.opts.Kinds))], true
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p.requests.Add(1)
	kind, fault := p.draw(req)
	if !fault {
		p.rp.ServeHTTP(w, req)
		return
	}
	p.faults[kind].Add(1)
	switch kind {
	case Status:
		http.Error(w, "injected fault", http.StatusServiceUnavailable)
	case Reset:
		reset(w)
	case Stall:
		select {
		case <-time.After(p.opts.StallFor):
			p.rp.ServeHTTP(w, req)
		case <-req.Context().Done():
		}
	case Truncate:
		tw := &truncatingWriter{ResponseWriter: w}
		p.rp.ServeHTTP(tw, req)
	}
}

// reset hijacks the connection and closes it with SO_LINGER 0, so the
// client sees a connection reset.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// truncatingWriter passes the headers on, writes half of the body the
// headers announced (at least one byte short), then aborts the connection.
type truncatingWriter struct {
	http.ResponseWriter
	limit, written int64
	started        bool
}

func (t *truncatingWriter) WriteHeader(code int) {
	if !t.started {
		t.started = true
		t.limit = -1
		var n int64
		if _, err := fmt.Sscan(t.Header().Get("Content-Length"), &n); err == nil && n > 0 {
			t.limit = n / 2
		}
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *truncatingWriter) Write(b []byte) (int, error) {
	if !t.started {
		t.WriteHeader(http.StatusOK)
	}
	if t.limit < 0 {
		// No declared length: cut after the first write.
		t.ResponseWriter.Write(b[:len(b)/2])
		t.flushAndAbort()
	}
	if t.written+int64(len(b)) > t.limit {
		t.ResponseWriter.Write(b[:t.limit-t.written])
		t.flushAndAbort()
	}
	t.written += int64(len(b))
	return t.ResponseWriter.Write(b)
}

func (t *truncatingWriter) flushAndAbort() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

// Flush lets the reverse proxy flush streamed bodies.
func (t *truncatingWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

var nopLogger = newNopLogger()

func newNopLogger() *log.Logger { return log.New(io.Discard, "", 0) }
