package clients

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Admission is what a front end asks of the gate for a new connection.
type Admission struct {
	Protocol string        // "smtp", "imap", "pop3": for the log and metrics
	Lifetime time.Duration // reads fail once it has passed; 0: no limit (a relay in IDLE)
	// FirstRead bounds the wait for the client's first bytes (its TLS
	// handshake or first command), until the front end sets its own
	// deadlines.
	FirstRead time.Duration
	// SniffHTTP closes the connection when the client's first bytes are
	// an HTTP request (a web page aiming a browser at the port).
	SniffHTTP bool
	// Closed, when set, is called once the connection has closed.
	Closed func(*Conn)
}

// connectionRateWindow is the window of connections_per_minute.
const connectionRateWindow = time.Minute

// Admit decides whether a new connection is served and returns it wrapped.
// A client inside a [[network]] is exempt from the per-address limits
// unless its network sets its own. Every other client counts against
// connections_per_address (its address; an IPv6 client's /64) and
// connections_per_minute until it logs in, and such clients together may
// hold at most three quarters of max_connections: the rest stays for the
// networks' clients and those that logged in, on this connection or, from
// the same address, lately (a printer that logs in on a new connection per
// message). A refusal is logged as a summary, not one line per connection;
// the caller closes raw.
func (g *Gate) Admit(raw net.Conn, a Admission) (*Conn, error) {
	addr := clientAddr(raw.RemoteAddr())
	c, err := g.admit(raw, addr, a)
	if err != nil {
		g.metrics.refused.WithLabelValues(a.Protocol, reasonLabel(err)).Inc()
		g.refused.add(a.Protocol, addr, err)
		return nil, err
	}
	g.metrics.open.WithLabelValues(a.Protocol).Inc()
	return c, nil
}

func (g *Gate) admit(raw net.Conn, addr netip.Addr, a Admission) (*Conn, error) {
	st := g.settings.Load()
	key := addressKey(addr)
	perAddress, perMinute := st.limits.ConnectionsPerAddress, st.limits.ConnectionsPerMinute
	now := time.Now()
	unidentified := g.logins.Count(key, now, knownGoodWindow) == 0
	if n := g.dir.Load().networkOf(addr); n != nil {
		perAddress, perMinute = n.connectionsPerAddress, n.connectionsPerMinute
		unidentified = false
	}
	// Only connections that were admitted and never logged in count, so
	// that a flood cannot grow the counter, and a script that logs in on a
	// new connection per message is judged by its logins, not its address.
	if perMinute > 0 && g.connections.Count(key, now, connectionRateWindow) >= perMinute {
		return nil, ErrAddressRate
	}
	c := &Conn{
		Conn:      raw,
		gate:      g,
		addr:      addr,
		key:       key,
		admission: a,
		rated:     perMinute > 0,
		closed:    make(chan struct{}),
	}
	if err := g.conns.add(c, st.maxConnections, perAddress, unidentified); err != nil {
		return nil, err
	}
	if a.Lifetime > 0 {
		c.end = now.Add(a.Lifetime)
	}
	c.outer = c
	c.log = g.log.With("conn", g.conns.nextID(), "client", raw.RemoteAddr().String())
	c.debug = g.debugClient(addr)
	if a.FirstRead > 0 {
		c.SetReadDeadline(now.Add(a.FirstRead))
	}
	return c, nil
}

// reasonLabel is a refusal's metrics label.
func reasonLabel(err error) string {
	switch err {
	case ErrTooManyConnections:
		return "connections"
	case ErrAddressConnections:
		return "address_connections"
	case ErrAddressRate:
		return "address_rate"
	}
	return "other"
}

// clientAddr is the IP address of a connection's client; the zero Addr
// for a connection that is not TCP (a net.Pipe in tests).
func clientAddr(a net.Addr) netip.Addr {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	return tcp.AddrPort().Addr().Unmap()
}

// addressKey is what the per-address limits count by: the IPv4 address,
// or the IPv6 /64, which one host commonly holds whole.
func addressKey(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// tracker counts open connections: in all (max_connections), those not
// identified (at most three quarters of max_connections), and per address
// key those that a per-address limit applies to.
type tracker struct {
	ids atomic.Uint64 // the last connection number given

	mu           sync.Mutex
	total        int
	unidentified int
	perAddress   map[string]int
}

func newTracker() *tracker { return &tracker{perAddress: make(map[string]int)} }

// unidentifiedShare is the part of max_connections that clients neither in
// a [[network]] nor logged in, on the connection or lately from its
// address, may hold together.
func unidentifiedShare(maxConnections int) int { return maxConnections - maxConnections/4 }

func (t *tracker) add(c *Conn, maxConnections, perAddress int, unidentified bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case maxConnections > 0 && t.total >= maxConnections:
		return ErrTooManyConnections
	case unidentified && maxConnections > 0 && t.unidentified >= unidentifiedShare(maxConnections):
		return ErrTooManyConnections
	case perAddress > 0 && t.perAddress[c.key] >= perAddress:
		return ErrAddressConnections
	}
	t.total++
	if unidentified {
		t.unidentified++
		c.unidentified = true
	}
	if perAddress > 0 {
		t.perAddress[c.key]++
		c.perAddress = true
	}
	return nil
}

// identified takes c out of the counts that apply until a login.
func (t *tracker) identified(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.unidentified {
		t.unidentified--
		c.unidentified = false
	}
	if c.perAddress {
		t.leaveAddressLocked(c)
	}
}

func (t *tracker) remove(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total--
	if c.unidentified {
		t.unidentified--
	}
	if c.perAddress {
		t.leaveAddressLocked(c)
	}
}

func (t *tracker) leaveAddressLocked(c *Conn) {
	c.perAddress = false
	if t.perAddress[c.key]--; t.perAddress[c.key] <= 0 {
		delete(t.perAddress, c.key)
	}
}

func (t *tracker) nextID() uint64 { return t.ids.Add(1) }
