package mountcheck

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessOptions tune StartProcess. The zero value is usable.
type ProcessOptions struct {
	// JSON adds --json: readiness is the "ready" event, and Next returns
	// the later events ("prefetched", "unmounted"). Without it readiness is
	// the "mounted at DIR" line.
	JSON bool
	// Log receives the child's stderr and its stdout lines as they come.
	// Nil discards them; the last 4 KiB of stderr go into errors anyway.
	Log io.Writer
	// Credential runs the child as another user; nil runs it as this one.
	Credential *syscall.Credential
	// StopSignal is what Stop sends; nil means SIGTERM.
	StopSignal os.Signal
	// ReadyTimeout bounds the wait for readiness; 0 means 2 minutes.
	ReadyTimeout time.Duration
	// StopTimeout bounds the wait for the child to exit after StopSignal,
	// after which it is killed; 0 means 30 seconds.
	StopTimeout time.Duration
	// AllowMounted starts the child on a mount point the mount table
	// already lists (a dead mount the child is expected to replace);
	// otherwise that is refused with ErrStale.
	AllowMounted bool
}

// Event is one JSON line of `nydusify mount --json`: {"event": NAME, ...}.
// Numbers decode as float64.
type Event map[string]any

// Name is the event's "event" field.
func (e Event) Name() string {
	s, _ := e["event"].(string)
	return s
}

// Process is a supervised `nydusify mount` child process, mounted and
// ready. Stop (or Kill) must be called once it is no longer needed. Its
// methods are safe for concurrent use.
type Process struct {
	cmd     *exec.Cmd
	dir     string
	opts    ProcessOptions
	started time.Time
	ready   Event
	stderr  *tailBuffer

	// Guard lines, eof and changed, which the stdout reader fills.
	mu      sync.Mutex
	lines   []string      // stdout lines not yet taken by Next
	eof     bool          // stdout has ended
	changed chan struct{} // closed and replaced when lines or eof change

	exited  chan struct{} // closed once the child has exited and been waited for
	exitErr error         // its exit status, once exited is closed

	stopOnce sync.Once
	stopErr  error
}

// StartProcess runs `bin mount --mount-path mountPath [--json] args...` and
// returns once the mount is ready: the child said so and the mount table
// lists mountPath. A mount point already listed is refused as stale. If the
// child exits first, does not get ready within opts.ReadyTimeout, or ctx ends,
// it is killed, a mount it left is detached, and the error carries the tail
// of its stderr.
func StartProcess(ctx context.Context, bin, mountPath string, args []string, opts ProcessOptions) (*Process, error) {
	if !opts.AllowMounted {
		if err := refuseMounted(mountPath); err != nil {
			return nil, err
		}
	}
	if opts.StopSignal == nil {
		opts.StopSignal = syscall.SIGTERM
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 30 * time.Second
	}
	log := io.Discard
	if opts.Log != nil {
		log = &lockedWriter{w: opts.Log}
	}
	argv := []string{"mount", "--mount-path", mountPath}
	if opts.JSON {
		argv = append(argv, "--json")
	}
	p := &Process{
		cmd:     exec.Command(bin, append(argv, args...)...),
		dir:     mountPath,
		opts:    opts,
		stderr:  &tailBuffer{max: 4096},
		changed: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	p.cmd.Stderr = io.MultiWriter(p.stderr, log)
	if opts.Credential != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: opts.Credential}
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go p.read(stdout, log)
	if err := p.waitReady(ctx); err != nil {
		return nil, errors.Join(err, p.Kill())
	}
	return p, nil
}

// read collects stdout lines until the child closes stdout, then waits for
// the child.
func (p *Process) read(stdout io.Reader, log io.Writer) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		p.mu.Lock()
		p.lines = append(p.lines, line)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	// A line too long, or a read error: stop reading, so that Wait does not
	// hang on a child blocked writing to a full pipe.
	io.Copy(io.Discard, stdout)
	p.mu.Lock()
	p.eof = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.exitErr = p.cmd.Wait()
	close(p.exited)
}

// nextLine returns the next stdout line; ok is false once stdout ended and
// every line was taken.
func (p *Process) nextLine(ctx context.Context, timeout <-chan time.Time) (line string, ok bool, err error) {
	for {
		p.mu.Lock()
		if len(p.lines) > 0 {
			line = p.lines[0]
			p.lines = p.lines[1:]
			p.mu.Unlock()
			return line, true, nil
		}
		if p.eof {
			p.mu.Unlock()
			return "", false, nil
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", false, ctx.Err()
		case <-timeout:
			return "", false, errors.New("timed out")
		}
	}
}

// waitReady reads stdout until the ready event or line, then requires the
// mount table to list the mount point.
func (p *Process) waitReady(ctx context.Context) error {
	timer := time.NewTimer(p.opts.ReadyTimeout)
	defer timer.Stop()
	for p.ready == nil {
		line, ok, err := p.nextLine(ctx, timer.C)
		if err != nil {
			return fmt.Errorf("nydusify mount on %s: not ready (%v)%s", p.dir, err, p.stderrTail())
		}
		if !ok {
			<-p.exited
			return fmt.Errorf("nydusify mount exited before mounting %s (%v)%s", p.dir, p.exitErr, p.stderrTail())
		}
		if p.opts.JSON {
			var ev Event
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Name() == "ready" {
				p.ready = ev
			}
		} else if dir, found := strings.CutPrefix(line, "mounted at "); found {
			p.ready = Event{"event": "ready", "mount_path": dir}
		}
	}
	mounted, err := Mounted(p.dir)
	if err != nil {
		return err
	}
	if !mounted {
		return fmt.Errorf("nydusify mount said it was ready, but %s is not in the mount table%s", p.dir, p.stderrTail())
	}
	return nil
}

// Ready is the ready event: with JSON, as the child printed it (mount_path,
// backend, blobs, cache_dir, ...); without, {"event": "ready",
// "mount_path": DIR} from the "mounted at" line.
func (p *Process) Ready() Event { return p.ready }

// Started is when the child was started: the time to a usable mount runs
// from here.
func (p *Process) Started() time.Time { return p.started }

// Dir is the mount point.
func (p *Process) Dir() string { return p.dir }

// Next returns the next JSON event the child prints, waiting for it; after
// the child's stdout ends (it exited) and every event was taken, io.EOF.
func (p *Process) Next(ctx context.Context) (Event, error) {
	line, ok, err := p.nextLine(ctx, nil)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, io.EOF
	}
	var ev Event
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		return nil, fmt.Errorf("nydusify mount printed %q, not a JSON event: %w", line, err)
	}
	return ev, nil
}

// Stop sends opts.StopSignal, waits up to opts.StopTimeout for the child to
// exit (killing it after that), and requires a zero exit status and the
// mount gone from the mount table (a stale one is detached and reported).
// Later calls, and calls after Kill, return the first result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		if p.Exited() {
			p.stopErr = errors.Join(fmt.Errorf("nydusify mount had exited before the stop (%v)%s", p.exitErr, p.stderrTail()), p.kill())
			return
		}
		if err := p.cmd.Process.Signal(p.opts.StopSignal); err != nil {
			p.stopErr = errors.Join(fmt.Errorf("signalling nydusify mount: %w", err), p.kill())
			return
		}
		select {
		case <-p.exited:
		case <-time.After(p.opts.StopTimeout):
			p.stopErr = errors.Join(fmt.Errorf("nydusify mount did not exit within %v of %v; killed%s",
				p.opts.StopTimeout, p.opts.StopSignal, p.stderrTail()), p.kill())
			return
		}
		var errs []error
		if p.exitErr != nil {
			errs = append(errs, fmt.Errorf("nydusify mount: %w%s", p.exitErr, p.stderrTail()))
		}
		if err := unmountStale(p.dir); err != nil {
			errs = append(errs, fmt.Errorf("after nydusify mount exited: %w", err))
		}
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}

// Kill kills the child without a clean stop, waits for it and detaches a
// mount it left. The error is only for a mount that could not be detached.
func (p *Process) Kill() error {
	p.stopOnce.Do(func() { p.stopErr = p.kill() })
	return p.stopErr
}

func (p *Process) kill() error {
	p.cmd.Process.Kill()
	<-p.exited
	// A killed FUSE server leaves its mount behind ("transport endpoint is
	// not connected"): expected here, so only a failed detach is an error.
	_, err := detachStale(p.dir)
	return err
}

// Signal sends sig to the child and nothing more: to see what it does
// with a signal, or to leave a dead mount behind with SIGKILL. Stop or Kill
// is still needed afterwards, or Wait when the child is to exit by itself.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the child to exit and returns its exit status; it does not
// look at the mount table.
func (p *Process) Wait() error {
	<-p.exited
	return p.exitErr
}

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *Process) stderrTail() string {
	s := p.stderr.String()
	if s == "" {
		return ""
	}
	return "\nstderr:\n" + s
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lockedWriter serialises the stdout reader's and exec's stderr copier's
// writes to one Log.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
