package smtpserver

import (
	"io"
	"net"
	"sync"
	"time"
)

// goodbyeTimeout bounds how long a farewell 421 may take to write.
const goodbyeTimeout = 5 * time.Second

// connTracker counts open connections, enforces max_connections and lets
// Shutdown reach every connection.
type connTracker struct {
	mu       sync.Mutex
	max      int // 0: no limit
	conns    map[*trackedConn]struct{}
	draining bool
	empty    chan struct{} // closed once draining and no connection is left
}

func newConnTracker(max int) *connTracker {
	return &connTracker{max: max, conns: make(map[*trackedConn]struct{})}
}

// add starts tracking c, or refuses it with errShuttingDown or
// errTooManyConnections.
func (t *connTracker) add(c net.Conn) (*trackedConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return nil, errShuttingDown
	}
	if t.max > 0 && len(t.conns) >= t.max {
		return nil, errTooManyConnections
	}
	tc := &trackedConn{Conn: c, tracker: t}
	tc.outer = tc
	t.conns[tc] = struct{}{}
	return tc, nil
}

func (t *connTracker) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
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
// go-smtp itself cannot do.
type trackedConn struct {
	net.Conn
	tracker *connTracker

	mu              sync.Mutex
	outer           net.Conn // what go-smtp writes to: this conn, or TLS over it
	inTransaction   bool
	draining        bool
	closeAfterWrite bool
	authFailures    int
	closeOnce       sync.Once
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
	c.closeOnce.Do(func() { c.tracker.remove(c) })
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
	outer := c.outer
	c.mu.Unlock()
	if !idle {
		return
	}
	outer.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	io.WriteString(outer, goodbye)
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
