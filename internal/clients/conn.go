package clients

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ErrHTTPRequest ends a connection whose first bytes are an HTTP request
// (Admission.SniffHTTP); it gets no reply.
var ErrHTTPRequest = errors.New("HTTP request on a mail port: connection closed")

// goodbyeTimeout bounds how long a farewell line may take to write.
const goodbyeTimeout = 5 * time.Second

// Conn is an admitted client connection: the raw TCP connection, under TLS
// when there is TLS, so that the front end's TLS library still sees its
// *tls.Conn. It bounds every read by the session's lifetime, counts the
// connection's error replies and failed logins, can close right after the
// next reply, and knows whether a unit of work (an SMTP transaction) is in
// progress, so that a shutdown lets it finish. What the client and the
// server say is read above TLS, by Watch.
type Conn struct {
	net.Conn
	gate      *Gate
	addr      netip.Addr
	key       string // addressKey(addr)
	admission Admission
	log       *slog.Logger
	debug     bool          // conversations logged line by line
	rated     bool          // counts toward connections_per_minute unless it logs in
	end       time.Time     // zero: no lifetime
	closed    chan struct{} // closed by Close, to cut short a pause
	closeOnce sync.Once

	// Guarded by the gate's tracker.
	unidentified, perAddress bool

	// Touched only by the goroutine reading the connection.
	first   []byte // the client's first bytes, until sniffed
	sniffed bool

	// Read on every reply without taking mu.
	closeAfterWrite atomic.Bool

	mu            sync.Mutex
	outer         net.Conn // what the front end writes to: this conn, or TLS over it
	loggedIn      bool
	busy          bool
	draining      bool
	loginFailures int
	errors        int // error replies sent
}

// Debug reports whether this connection's conversation is logged line by
// line (level debug, and the client in debug_clients): for front ends
// whose parser logs the lines itself instead of a Watch.
func (c *Conn) Debug() bool { return c.debug }

// Addr is the client's IP address.
func (c *Conn) Addr() netip.Addr { return c.addr }

// Log is the connection's logger: it carries its number and client.
func (c *Conn) Log() *slog.Logger { return c.log }

// Refused counts an error reply the client is about to receive and says
// how long to wait before sending it (errors_before_delay, error_delay),
// and whether this one is over max_errors: the front end then says goodbye
// and closes instead. Watch calls it for every error reply it sees.
func (c *Conn) Refused() (delay time.Duration, closeNow bool) {
	c.mu.Lock()
	c.errors++
	n := c.errors
	c.mu.Unlock()
	l := c.gate.Limits()
	if n > l.MaxErrors {
		return 0, true
	}
	if n <= l.ErrorsBeforeDelay {
		return 0, false
	}
	return time.Duration(n-l.ErrorsBeforeDelay) * l.ErrorDelay.D(), false
}

// Pause waits d, or less if the connection closes meanwhile.
func (c *Conn) Pause(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.closed:
	}
}

// httpMethods start a request a browser or proxy sends when a web page
// aims it at a mail port (a cross-protocol attack); no mail command does.
var httpMethods = [][]byte{[]byte("GET "), []byte("POST "), []byte("HEAD "), []byte("PUT "), []byte("CONNECT ")}

// sniffLength is enough of the first line to recognize an HTTP method.
const sniffLength = len("CONNECT ")

// Read ends the connection when SniffHTTP is asked and the client's first
// bytes are an HTTP request. On implicit TLS listeners this conn carries
// the handshake, which never matches.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.admission.SniffHTTP || c.sniffed {
		return n, err
	}
	c.first = append(c.first, p[:min(n, sniffLength-len(c.first))]...)
	c.sniffed = len(c.first) == sniffLength || bytes.IndexByte(p[:n], '\n') >= 0 || err != nil
	if isHTTPRequest(c.first) {
		c.Close()
		return 0, ErrHTTPRequest
	}
	return n, err
}

func isHTTPRequest(first []byte) bool {
	for _, m := range httpMethods {
		if bytes.HasPrefix(first, m) {
			return true
		}
	}
	return false
}

// SetReadDeadline never lets a read outlast the session's lifetime: a
// front end moves the deadline before each command, so NOOP and RSET
// cannot extend the session.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if !c.end.IsZero() && (t.IsZero() || t.After(c.end)) {
		t = c.end
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// AllowRead gives the next reads d from now (within the lifetime): a
// message body gets longer than a command.
func (c *Conn) AllowRead(d time.Duration) {
	c.SetReadDeadline(time.Now().Add(d))
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfterWrite.Load() {
		c.Close()
	}
	return n, err
}

// Close closes the connection; its counts are updated first, so that a
// client that sees the close and connects again finds them current.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.gate.conns.remove(c)
		c.gate.metrics.open.WithLabelValues(c.admission.Protocol).Dec()
		c.mu.Lock()
		countsAsNew := c.rated && !c.loggedIn
		c.mu.Unlock()
		if countsAsNew {
			c.gate.connections.Add(c.key, time.Now(), connectionRateWindow, 1)
		}
		if c.admission.Closed != nil {
			c.admission.Closed(c)
		}
	})
	return c.Conn.Close()
}

// SetOuter names what the front end writes to (TLS over this conn once
// there is TLS), so that a goodbye goes through it.
func (c *Conn) SetOuter(outer net.Conn) {
	c.mu.Lock()
	c.outer = outer
	c.mu.Unlock()
}

// Begin marks a unit of work in progress (an SMTP transaction); false
// while shutting down, when no new one may start: the connection then
// closes after the reply about to be written.
func (c *Conn) Begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		c.closeAfterWrite.Store(true)
		return false
	}
	c.busy = true
	return true
}

// End marks the work finished. While shutting down, the connection closes
// after the reply about to be written.
func (c *Conn) End() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	if c.draining {
		c.closeAfterWrite.Store(true)
	}
}

// CloseAfterNextWrite closes the connection once the next reply is out.
func (c *Conn) CloseAfterNextWrite() {
	c.closeAfterWrite.Store(true)
}

// Drain starts the shutdown of this connection: an idle one is told
// goodbye and closed now; one in the middle of work may finish it and is
// closed after its final reply.
func (c *Conn) Drain(goodbye string) {
	c.mu.Lock()
	c.draining = true
	idle := !c.busy
	c.mu.Unlock()
	if idle {
		c.SayGoodbye(goodbye)
	}
}

// SayGoodbye writes a last line, bypassing the front end, and closes.
func (c *Conn) SayGoodbye(line string) {
	c.mu.Lock()
	outer := c.outer
	c.mu.Unlock()
	outer.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	io.WriteString(outer, line)
	c.Close()
}

// Of finds the Conn under a connection a front end holds, through TLS and
// Watch (anything with a NetConn method); nil when there is none.
func Of(conn net.Conn) *Conn {
	for conn != nil {
		if c, ok := conn.(*Conn); ok {
			return c
		}
		inner, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		conn = inner.NetConn()
	}
	return nil
}

// TLSState returns the TLS state of a connection a front end holds: the
// first *tls.Conn found unwrapping it (through Watch) whose handshake is
// complete.
func TLSState(conn net.Conn) (tls.ConnectionState, bool) {
	for conn != nil {
		if t, ok := conn.(*tls.Conn); ok {
			state := t.ConnectionState()
			return state, state.HandshakeComplete
		}
		inner, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = inner.NetConn()
	}
	return tls.ConnectionState{}, false
}
