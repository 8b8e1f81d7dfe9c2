package clients

import (
	"io"
	"log/slog"
	"net"
	"sync"
)

// Protocol reads one connection's conversation for Watch, in the words of
// its front end. Each connection has its own.
type Protocol interface {
	// Client is given what the client sent, in order, and returns the
	// lines to log: commands, with credentials and message text left out.
	// It is called only while the conversation is logged.
	Client(p []byte) (logged []string)
	// Server is given a reply the server is about to write, in order, and
	// returns the lines to log, how many error replies it holds, and
	// whether the bytes after it are encrypted (STARTTLS).
	Server(p []byte) (logged []string, errors int, encrypted bool)
	// TooManyErrors is the line sent instead of an error reply past
	// max_errors, before the connection closes. It is asked for once, as
	// that happens, so that a front end may count the close there.
	TooManyErrors() string
}

// maxLoggedLines bounds the lines of one conversation in the debug log:
// NOOP in a loop must not fill the disk.
const maxLoggedLines = 500

// LogBudget counts the lines one conversation has logged at level debug,
// for every front end: Take says whether one more may be logged, and logs
// to log that the conversation log stops here when the budget runs out.
type LogBudget struct{ taken int }

// Take spends one line of the budget.
func (b *LogBudget) Take(log *slog.Logger) bool {
	b.taken++
	if b.taken == maxLoggedLines {
		log.Debug("conversation log stops here", "lines", maxLoggedLines)
	}
	return b.taken < maxLoggedLines
}

// Watch reads a conversation above TLS: it counts every error reply the
// client receives, whoever writes it, delays it as errors_before_delay and
// error_delay say and replaces the one past max_errors with a goodbye, and
// logs the conversation line by line at level debug (for the clients of
// debug_clients). It is built once per connection; its Conn wraps what
// the front end reads and writes (c itself, or TLS over c), and after a
// STARTTLS that the front end's library performs on that Conn, Reader and
// Writer wrap what the library reads and writes above the new TLS.
type Watch struct {
	c     *Conn
	proto Protocol

	mu        sync.Mutex
	logged    LogBudget
	encrypted bool // bytes below the front end's STARTTLS are ciphertext
}

// Watch starts watching the conversation of c with p.
func (c *Conn) Watch(p Protocol) *Watch { return &Watch{c: c, proto: p} }

// Conn wraps conn, what the front end reads and writes: c, or TLS over c.
// Through NetConn, the front end still finds the TLS state (TLSState).
func (w *Watch) Conn(conn net.Conn) net.Conn { return &watchedConn{Conn: conn, w: w} }

// Reader wraps what the front end reads above a TLS layer it started
// itself, over the Conn of this Watch.
func (w *Watch) Reader(r io.Reader) io.Reader { return &watchedReader{r: r, w: w} }

// Writer is Reader's counterpart for what the front end writes.
func (w *Watch) Writer(dst io.Writer) io.Writer { return &watchedWriter{dst: dst, w: w} }

// client notes what the client sent; below: on the Conn, under a TLS
// layer the front end may have started.
func (w *Watch) client(p []byte, below bool) {
	if !w.c.debug || len(p) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if below && w.encrypted {
		return
	}
	w.logLocked("client", w.proto.Client(p))
}

// server writes a reply to dst, counting, delaying or replacing it.
func (w *Watch) server(dst io.Writer, p []byte, below bool) (int, error) {
	w.mu.Lock()
	if below && w.encrypted {
		w.mu.Unlock()
		return dst.Write(p)
	}
	logged, errors, encrypted := w.proto.Server(p)
	if w.c.debug {
		w.logLocked("server", logged)
	}
	w.mu.Unlock()
	for range errors {
		delay, closeNow := w.c.Refused()
		if closeNow {
			w.c.log.Info("closing the connection", "reason", "too many error replies")
			io.WriteString(dst, w.proto.TooManyErrors())
			w.c.Close()
			return len(p), nil
		}
		w.c.Pause(delay)
	}
	n, err := dst.Write(p)
	if encrypted && below {
		w.mu.Lock()
		w.encrypted = true
		w.mu.Unlock()
	}
	return n, err
}

func (w *Watch) logLocked(side string, lines []string) {
	for _, line := range lines {
		if w.logged.Take(w.c.log) {
			w.c.log.Debug("conversation "+side, "line", line)
		}
	}
}

type watchedConn struct {
	net.Conn
	w *Watch
}

// NetConn lets front ends find the connection underneath.
func (c *watchedConn) NetConn() net.Conn { return c.Conn }

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.client(p[:n], true)
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) { return c.w.server(c.Conn, p, true) }

type watchedReader struct {
	r io.Reader
	w *Watch
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.w.client(p[:n], false)
	return n, err
}

type watchedWriter struct {
	dst io.Writer
	w   *Watch
}

func (w *watchedWriter) Write(p []byte) (int, error) { return w.w.server(w.dst, p, false) }
