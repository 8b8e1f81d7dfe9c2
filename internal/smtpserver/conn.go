package smtpserver

import (
	"net"
	"sync"

	"github.com/smtpgw/smtpgw/internal/clients"
)

// registry holds the server's open connections, so that Shutdown reaches
// every one of them.
type registry struct {
	mu       sync.Mutex
	conns    map[*clients.Conn]*connState
	draining bool
	empty    chan struct{} // closed once draining and no connection is left
}

// connState is what the server keeps about one connection beyond its
// go-smtp session, which STARTTLS replaces.
type connState struct {
	watch *clients.Watch
	lines *smtpLines
}

func newRegistry() *registry {
	return &registry{conns: make(map[*clients.Conn]*connState)}
}

// add registers c; false once the server is shutting down.
func (r *registry) add(c *clients.Conn, st *connState) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return false
	}
	r.conns[c] = st
	return true
}

// state returns what the server keeps about c.
func (r *registry) state(c *clients.Conn) *connState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[c]
}

func (r *registry) remove(c *clients.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
	if r.draining && len(r.conns) == 0 && r.empty != nil {
		close(r.empty)
		r.empty = nil
	}
}

// drain refuses new connections from now on and returns the open ones and
// a channel closed once all of them are gone.
func (r *registry) drain() ([]*clients.Conn, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	empty := make(chan struct{})
	if r.draining {
		// A second Shutdown waits for the same connections.
		if r.empty == nil {
			close(empty)
		} else {
			empty = r.empty
		}
		return nil, empty
	}
	r.draining = true
	conns := make([]*clients.Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		close(empty)
	} else {
		r.empty = empty
	}
	return conns, empty
}

func (r *registry) closeAll() {
	r.mu.Lock()
	conns := make([]*clients.Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
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
