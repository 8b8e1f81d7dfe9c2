package smtpserver

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// goodbyeTimeout bounds how long a farewell 421 may take to write.
const goodbyeTimeout = 5 * time.Second

// connTracker counts open connections, in all and per client address,
// enforces max_connections and connections_per_address, and lets Shutdown
// reach every connection.
type connTracker struct {
	mu        sync.Mutex
	max       int // 0: no limit
	conns     map[*trackedConn]struct{}
	perClient map[netip.Addr]int
	draining  bool
	empty     chan struct{} // closed once draining and no connection is left
}

func newConnTracker(max int) *connTracker {
	return &connTracker{max: max, conns: make(map[*trackedConn]struct{}), perClient: make(map[netip.Addr]int)}
}

// admission is what a new connection may do, from the configuration in
// force when it arrives.
type admission struct {
	perAddress int           // connections open at once from its address
	lifetime   time.Duration // session_lifetime
}

// add starts tracking c from client, or refuses it with errShuttingDown,
// errTooManyConnections or errAddressConnections.
func (t *connTracker) add(c net.Conn, client netip.Addr, a admission) (*trackedConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.draining:
		return nil, errShuttingDown
	case t.max > 0 && len(t.conns) >= t.max:
		return nil, errTooManyConnections
	case t.perClient[client] >= a.perAddress:
		return nil, errAddressConnections
	}
	tc := &trackedConn{Conn: c, tracker: t, client: client, end: time.Now().Add(a.lifetime), closed: make(chan struct{})}
	tc.outer = tc
	t.conns[tc] = struct{}{}
	t.perClient[client]++
	return tc, nil
}

func (t *connTracker) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	if t.perClient[c.client]--; t.perClient[c.client] <= 0 {
		delete(t.perClient, c.client)
	}
	if t.draining && len(t.conns) == 0 {
		close(t.empty)
		t.empty = nil
	}
}

// drain refuses new connections from now on and returns the open ones and
// a channel closed once all of them are gone.
func (t *connTracker) drain() ([]*trackedConn, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	empty := make(chan struct{})
	if t.draining {
		// A second Shutdown waits for the same connections.
		if t.empty == nil {
			close(empty)
		} else {
			empty = t.empty
		}
		return nil, empty
	}
	t.draining = true
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		close(empty)
	} else {
		t.empty = empty
	}
	return conns, empty
}

func (t *connTracker) closeAll() {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// trackedConn is the raw TCP connection under go-smtp (and under TLS when
// there is TLS). It knows whether a mail transaction is in progress, so
// that a shutdown lets transactions finish and closes idle sessions, and
// it can close the connection right after a final reply is written, which
// go-smtp itself cannot do. It also holds what the limits count per
// connection, and bounds every read by the session's lifetime.
type trackedConn struct {
	net.Conn
	tracker *connTracker
	client  netip.Addr
	log     *slog.Logger  // the connection's logger: its id and client
	end     time.Time     // session_lifetime reached: reads time out
	closed  chan struct{} // closed by Close, to cut short a delayed reply

	mu              sync.Mutex
	outer           net.Conn // what go-smtp writes to: this conn, or TLS over it
	inTransaction   bool
	draining        bool
	closeAfterWrite bool
	authFailures    int
	errors          int    // error replies sent
	first           []byte // the client's first bytes, until sniffed
	sniffed         bool
	closeOnce       sync.Once
}

// httpMethods start a request a browser or proxy sends when a web page
// aims it at the SMTP port (a cross-protocol attack); no SMTP command does.
var httpMethods = [][]byte{[]byte("GET "), []byte("POST "), []byte("HEAD "), []byte("PUT "), []byte("CONNECT ")}

// sniffLength is enough of the first line to recognize an HTTP method.
const sniffLength = len("CONNECT ")

// Read ends the connection when the client's first bytes are an HTTP
// request. On implicit TLS listeners this conn carries the handshake, which
// never matches.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if !c.sniffed {
		c.first = append(c.first, p[:min(n, sniffLength-len(c.first))]...)
		c.sniffed = len(c.first) == sniffLength || bytes.IndexByte(p[:n], '\n') >= 0 || err != nil
		if isHTTPRequest(c.first) {
			c.mu.Unlock()
			c.Close()
			return 0, errHTTPRequest
		}
	}
	c.mu.Unlock()
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

// SetReadDeadline never lets a read outlast the session's lifetime: go-smtp
// moves the deadline before each command, so NOOP and RSET cannot extend
// the session.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() || t.After(c.end) {
		t = c.end
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// allowRead gives the next reads d from now (within the lifetime): the
// message body gets read_timeout, not the idle timeout of a command.
func (c *trackedConn) allowRead(d time.Duration) {
	c.SetReadDeadline(time.Now().Add(d))
}

// countError counts an error reply and returns the count so far.
func (c *trackedConn) countError() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors++
	return c.errors
}

// pause waits d, or less if the connection closes meanwhile.
func (c *trackedConn) pause(d time.Duration) {
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

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	closeNow := c.closeAfterWrite
	c.mu.Unlock()
	if closeNow {
		c.Close()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		close(c.closed)
		c.tracker.remove(c)
	})
	return err
}

func (c *trackedConn) setOuter(outer net.Conn) {
	c.mu.Lock()
	c.outer = outer
	c.mu.Unlock()
}

// beginTransaction marks a transaction in progress; false while shutting
// down, when no new transaction may start.
func (c *trackedConn) beginTransaction() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		c.closeAfterWrite = true
		return false
	}
	c.inTransaction = true
	return true
}

// endTransaction marks the transaction finished. While shutting down, the
// connection closes after the reply that is about to be written.
func (c *trackedConn) endTransaction() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inTransaction = false
	if c.draining {
		c.closeAfterWrite = true
	}
}

// authFailed counts a failed AUTH and returns the count so far.
func (c *trackedConn) authFailed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.authFailures++
	return c.authFailures
}

func (c *trackedConn) closeAfterNextWrite() {
	c.mu.Lock()
	c.closeAfterWrite = true
	c.mu.Unlock()
}

// drain starts the shutdown of this connection: an idle session is told
// goodbye and closed now; one inside a transaction may finish it and is
// closed after its final reply.
func (c *trackedConn) drain(goodbye string) {
	c.mu.Lock()
	c.draining = true
	idle := !c.inTransaction
	c.mu.Unlock()
	if idle {
		c.sayGoodbye(goodbye)
	}
}

// sayGoodbye writes a last reply line, bypassing go-smtp, and closes.
func (c *trackedConn) sayGoodbye(line string) {
	c.mu.Lock()
	outer := c.outer
	c.mu.Unlock()
	outer.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	io.WriteString(outer, line)
	c.Close()
}

// handoffListener is the net.Listener a go-smtp Server serves: the
// server's own accept loop hands it the connections it admits. This keeps
// the real listener open during shutdown, so that new connections are
// answered 421 rather than refused.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoffListener) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoffListener) Addr() net.Addr { return h.addr }

// deliver hands c to go-smtp; false once the listener is closed.
func (h *handoffListener) deliver(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
	}
}
