package clients

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/config"
)

const (
	printerUser     = "mfp-floor3"
	printerPassword = "correct horse"
)

// testConfig has one account, its password hashed at bcrypt cost, a /31
// network and a /32 inside it, and whatever TOML extra adds.
func testConfig(t testing.TB, cost int, extra string) *config.Config {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(printerPassword), cost)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[[listener]]
address = "127.0.0.1:0"
[outbox]
dir = "unused"
[[user]]
username = %q
password_hash = %q
mailbox = "scanner@contoso.com"
[[network]]
cidrs = ["127.0.0.0/31"]
mailbox = "wrong@contoso.com"
[[network]]
cidrs = ["127.0.0.1"]
mailbox = "noreply@contoso.com"
%s`, printerUser, hash, extra)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testGate(t testing.TB, extra string) *Gate {
	t.Helper()
	g, err := New(testConfig(t, bcrypt.MinCost, extra), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// fakeConn is a connection from addr that nothing reads or writes.
type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c fakeConn) RemoteAddr() net.Addr             { return c.remote }
func (c fakeConn) Close() error                     { return nil }
func (c fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c fakeConn) Write(p []byte) (int, error)      { return len(p), nil }

func from(addr string) net.Conn {
	return fakeConn{remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 2525))}
}

var smtpAdmission = Admission{Protocol: "smtp", Lifetime: time.Minute}

// admit admits a connection from addr, which the test expects to pass.
func admit(t testing.TB, g *Gate, addr string) *Conn {
	t.Helper()
	c, err := g.Admit(from(addr), smtpAdmission)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIdentities(t *testing.T) {
	g := testGate(t, "")
	dir := g.dir.Load()
	for _, tc := range []struct{ user, password string }{
		{printerUser, "wrong"}, {"nobody", printerPassword}, {"", ""},
	} {
		if id, err := dir.check(tc.user, tc.password); id != nil || !errors.Is(err, ErrBadCredentials) {
			t.Errorf("check(%q): %v, %v", tc.user, id, err)
		}
	}
	if id, err := dir.check(printerUser, printerPassword); err != nil || id.Name != "user:"+printerUser || id.Mailbox != "scanner@contoso.com" {
		t.Errorf("check: %+v, %v", id, err)
	}
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1", "network:127.0.0.1/32"},
		{"::ffff:127.0.0.1", "network:127.0.0.1/32"},
		{"127.0.0.0", "network:127.0.0.0/31"},
		{"127.0.0.2", ""},
		{"::1", ""},
	} {
		got := ""
		if id := g.Network(netip.MustParseAddr(tc.addr)); id != nil {
			got = id.Name
		}
		if got != tc.want {
			t.Errorf("Network(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	// Unknown users are checked against a hash as costly as the costliest.
	cfg := testConfig(t, bcrypt.MinCost, "")
	slow, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Users = append(cfg.Users, config.User{Username: "slow", PasswordHash: string(slow), Mailbox: "slow@contoso.com"})
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if cost, _ := bcrypt.Cost(g.dir.Load().dummyHash); cost != bcrypt.MinCost+1 {
		t.Errorf("dummy hash cost %d, want %d", cost, bcrypt.MinCost+1)
	}
	cfg = testConfig(t, bcrypt.MinCost, "")
	cfg.Users[0].PasswordHash = "plain text"
	if err := g.Reload(cfg); err == nil || !strings.Contains(err.Error(), printerUser) {
		t.Errorf("bad hash: %v", err)
	}
}

func TestLogin(t *testing.T) {
	g := testGate(t, "[limits]\nauth_min_duration = \"50ms\"\n")
	c := admit(t, g, "192.0.2.7")
	start := time.Now()
	if _, err := g.Login(c, "nobody", "guess"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("unknown user: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("failure answered after %v, want auth_min_duration", d)
	}
	if _, err := g.Login(c, strings.Repeat("x", MaxUsername+1), "guess"); !errors.Is(err, ErrMalformed) {
		t.Errorf("overlong username: %v", err)
	}
	id, err := g.Login(c, printerUser, printerPassword)
	if err != nil || id.Name != "user:"+printerUser {
		t.Fatalf("login: %v, %v", id, err)
	}
	// A third failure on one connection (max_auth_failures 3) ends it.
	if _, err := g.Login(c, printerUser, "x"); !errors.Is(err, ErrTooManyFailures) || !errors.Is(err, ErrBadCredentials) {
		t.Errorf("third failure: %v", err)
	}
}

// TestAdmit: clients outside every [[network]] are limited per address
// (an IPv6 client per /64) and together to three quarters of
// max_connections; a network's clients are not, and a login lifts a
// connection out of the per-address count.
func TestAdmit(t *testing.T) {
	g := testGate(t, "[server]\nmax_connections = 8\n[limits]\nconnections_per_address = 2\n")
	admit := func(addr string) (*Conn, error) { return g.Admit(from(addr), smtpAdmission) }
	var held []*Conn
	for _, addr := range []string{"2001:db8::1", "2001:db8::2"} {
		c, err := admit(addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if _, err := admit("2001:db8::3"); !errors.Is(err, ErrAddressConnections) {
		t.Errorf("third from one /64: %v", err)
	}
	// A login frees its address's room, and its address no longer counts
	// toward the share of unidentified clients.
	if _, err := g.Login(held[0], printerUser, printerPassword); err != nil {
		t.Fatal(err)
	}
	third, err := admit("2001:db8::3")
	if err != nil {
		t.Fatalf("after a login: %v", err)
	}
	for _, addr := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"} {
		if _, err := admit(addr); err != nil {
			t.Fatal(err)
		}
	}
	// 6 of 8 unidentified (2001:db8::2 and five): the rest is kept for
	// networks and logins.
	if _, err := admit("192.0.2.6"); !errors.Is(err, ErrTooManyConnections) {
		t.Errorf("unidentified past three quarters: %v", err)
	}
	third.Close()
	if _, err := admit("127.0.0.1"); err != nil {
		t.Errorf("network client: %v", err)
	}
	if _, err := admit("127.0.0.1"); !errors.Is(err, ErrTooManyConnections) {
		t.Errorf("past max_connections: %v", err)
	}
}

func TestRefused(t *testing.T) {
	g := testGate(t, "[limits]\nerrors_before_delay = 3\nerror_delay = \"1s\"\nmax_errors = 10\n")
	c := admit(t, g, "192.0.2.7")
	want := map[int]time.Duration{1: 0, 3: 0, 4: time.Second, 5: 2 * time.Second, 10: 7 * time.Second}
	for n := 1; n <= 10; n++ {
		delay, closeNow := c.Refused()
		if w, ok := want[n]; ok && delay != w || closeNow {
			t.Errorf("error %d: delay %v close %v", n, delay, closeNow)
		}
	}
	if _, closeNow := c.Refused(); !closeNow {
		t.Error("error 11 past max_errors 10 does not close")
	}
}

func TestGuessingKeys(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.77":          "192.0.2.77 net 192.0.2.0/24",
		"2001:db8:1:2:3::4":   "2001:db8:1:2::/64 net 2001:db8:1::/48",
		"::ffff:198.51.100.9": "198.51.100.9 net 198.51.100.0/24",
	} {
		a := netip.MustParseAddr(addr).Unmap()
		if got := addressKey(a) + " " + networkKey(a); got != want {
			t.Errorf("keys of %s = %s, want %s", addr, got, want)
		}
	}
}

// TestCheckPoolTakesTurns: a flood of checks from one address waits behind
// itself while another address is served next; addresses that logged in
// lately go first, addresses that failed lately wait behind the others.
func TestCheckPoolTakesTurns(t *testing.T) {
	p := newCheckPool()
	flood, printer, guesser := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.9")
	regular := netip.MustParseAddr("198.51.100.8")
	never := make(chan struct{})
	if !p.acquire(flood, clean, 1, never) {
		t.Fatal("free pool refused")
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queued := 0
	enqueue := func(client netip.Addr, line int, name string) {
		queued++
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(client, line, 1, never, func() {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
			})
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			p.mu.Lock()
			n := 0
			for _, q := range p.waiting {
				n += len(q)
			}
			p.mu.Unlock()
			if n == queued {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never waits", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	enqueue(guesser, suspect, "guesser")
	enqueue(flood, clean, "flood1")
	enqueue(flood, clean, "flood2")
	enqueue(flood, clean, "flood3")
	enqueue(printer, clean, "printer")
	enqueue(regular, known, "regular")
	p.release(1)
	wg.Wait()
	if got := strings.Join(order, " "); got != "regular flood1 printer flood2 flood3 guesser" {
		t.Errorf("served %s", got)
	}
	// A waiting check that gives up leaves the pool usable.
	if !p.acquire(flood, clean, 1, never) {
		t.Fatal("pool not free after the checks")
	}
	cancel := make(chan struct{})
	close(cancel)
	if p.acquire(printer, clean, 1, cancel) {
		t.Error("cancelled wait acquired a busy slot")
	}
	p.release(1)
	if p.busy != 0 || p.nextLineLocked() >= 0 || len(p.waiting) != 0 {
		t.Errorf("pool left busy=%d turns=%v waiting=%v", p.busy, p.turns, p.waiting)
	}
}

// TestGuessingBudget: many addresses in many networks guessing a few
// times each exhaust the global budget; then an address that failed is
// refused unchecked, while one that never failed still logs in.
func TestGuessingBudget(t *testing.T) {
	g := testGate(t, "[limits]\nauth_failures_global = 20\nauth_min_duration = \"1ms\"\n")
	for i := range 20 {
		c := admit(t, g, fmt.Sprintf("10.%d.0.1", i))
		if _, err := g.Login(c, printerUser, "guess"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
		c.Close()
	}
	guesser := admit(t, g, "10.3.0.1")
	if _, err := g.Login(guesser, printerUser, printerPassword); !errors.Is(err, ErrThrottled) {
		t.Errorf("a guessing address past the global budget: %v", err)
	}
	printer := admit(t, g, "10.200.0.1")
	if _, err := g.Login(printer, printerUser, printerPassword); err != nil {
		t.Errorf("an address that never failed: %v", err)
	}
}

// TestRefusalsSummed: a flood of refused connections writes one log line
// at once and one summary afterwards, not a line each.
func TestRefusalsSummed(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	g := testGate(t, "[limits]\nconnections_per_address = 1\n")
	// A period far longer than the test, ended by hand: a busy machine
	// must not split the refusals over several periods.
	g.refused = &refusalSummary{log: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)), every: time.Hour}
	admit(t, g, "192.0.2.7")
	for range 1000 {
		if _, err := g.Admit(from("192.0.2.7"), smtpAdmission); !errors.Is(err, ErrAddressConnections) {
			t.Fatalf("over the limit: %v", err)
		}
	}
	g.refused.flush()
	mu.Lock()
	defer mu.Unlock()
	got := logs.String()
	if n := strings.Count(got, "\n"); n != 2 || !strings.Contains(got, "count=999") {
		t.Errorf("1,000 refusals logged as %d lines:\n%s", n, got)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestCheckLine: a login waits in the first line of the password checks
// when its address logged in lately, even while many addresses guess; in
// the last when its address failed lately, or, during such a storm, when
// it is not known; in the middle otherwise.
func TestCheckLine(t *testing.T) {
	g := testGate(t, "[limits]\nauth_failures_global = 3\nauth_failures = 10\nauth_min_duration = \"1ms\"\n")
	st := g.settings.Load()
	lineOf := func(c *Conn) int {
		now := time.Now()
		failures, storm, _ := g.guessing(c, st, now)
		return g.checkLine(c, failures, storm, now)
	}
	printer := admit(t, g, "10.9.0.1")
	if _, err := g.Login(printer, printerUser, printerPassword); err != nil {
		t.Fatal(err)
	}
	stranger, guesser := admit(t, g, "10.50.0.1"), admit(t, g, "10.0.0.1")
	for name, tc := range map[string]struct {
		c    *Conn
		want int
	}{"printer": {printer, known}, "stranger": {stranger, clean}, "guesser": {guesser, clean}} {
		if got := lineOf(tc.c); got != tc.want {
			t.Errorf("before guessing, %s waits in line %d, want %d", name, got, tc.want)
		}
	}
	g.Login(guesser, printerUser, "guess")
	if got := lineOf(guesser); got != suspect {
		t.Errorf("an address that failed waits in line %d, want %d", got, suspect)
	}
	for i := 1; i < 3; i++ {
		g.Login(admit(t, g, fmt.Sprintf("10.%d.0.1", i)), printerUser, "guess")
	}
	for name, tc := range map[string]struct {
		c    *Conn
		want int
	}{"printer": {printer, known}, "stranger": {stranger, suspect}, "guesser": {guesser, suspect}} {
		if got := lineOf(tc.c); got != tc.want {
			t.Errorf("while many guess, %s waits in line %d, want %d", name, got, tc.want)
		}
	}
}

// TestLogBudget: a conversation logs 499 lines, then one saying the log
// stops, then nothing, whichever front end writes it.
func TestLogBudget(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var b LogBudget
	taken := 0
	for range 2 * maxLoggedLines {
		if b.Take(log) {
			taken++
		}
	}
	if taken != maxLoggedLines-1 || strings.Count(out.String(), "conversation log stops here") != 1 {
		t.Errorf("%d lines allowed, log %q; want %d and one stop line", taken, out.String(), maxLoggedLines-1)
	}
}
