package smtpserver

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// login tries one AUTH PLAIN on a new implicit-TLS connection from source
// and returns the reply.
func (ts *testServer) login(t *testing.T, source, user, password string) string {
	t.Helper()
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), from(source))
	r.greet()
	r.text.PrintfLine("AUTH PLAIN %s", plainIR(user, password))
	return r.reply()
}

func TestPasswordGuessingThrottled(t *testing.T) {
	ts := startServer(t, parseConfig(t, testLimits+"connections_per_minute = 100\n"))
	// Ten failures from one address, over several connections: wrong
	// passwords, an unknown user, and cancelled exchanges.
	for range 7 {
		if got := ts.login(t, "127.0.0.2", scannerUser, "guess"); !strings.HasPrefix(got, "535 5.7.8 ") {
			t.Fatalf("wrong password got %q", got)
		}
	}
	ts.login(t, "127.0.0.2", "nobody", "guess")
	for range 2 {
		r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), from("127.0.0.2"))
		r.greet()
		r.cmd("AUTH LOGIN", "334 ")
		r.cmd("*", "501 ")
		r.cmd("QUIT", "221 ")
	}
	// The cool-down refuses the right password too, from that address and
	// from its /24.
	waitForServer(t, "the cancelled exchanges count", func() bool {
		return strings.HasPrefix(ts.login(t, "127.0.0.2", scannerUser, scannerPassword), "454 4.7.0 ")
	})
	if got := ts.login(t, "127.0.0.3", scannerUser, scannerPassword); !strings.HasPrefix(got, "454 4.7.0 Too many failed logins") {
		t.Errorf("right password from the same /24 got %q", got)
	}
	// Another network logs in.
	if got := ts.login(t, "127.0.1.3", scannerUser, scannerPassword); !strings.HasPrefix(got, "235 ") {
		t.Errorf("right password from another /24 got %q", got)
	}
}

func TestAuthMinDuration(t *testing.T) {
	ts := startServer(t, parseConfig(t, "[limits]\nauth_min_duration = \"150ms\"\n"))
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), nil)
	r.greet()
	for _, user := range []string{"nobody", scannerUser} {
		start := time.Now()
		r.cmd("AUTH PLAIN "+plainIR(user, "guess"), "535 5.7.8 ")
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("AUTH as %s answered after %v, want at least 150ms", user, d)
		}
	}
}

func TestPasswordNeverLogged(t *testing.T) {
	ts := startServer(t, testConfig(t))
	const password = "Corr3ct-Horse-Battery"
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), nil)
	r.greet()
	// Fields in the wrong order: the password where the username goes.
	r.cmd("AUTH PLAIN "+b64("\x00"+password+"\x00"+scannerUser), "535 5.7.8 ")
	r.cmd("AUTH PLAIN "+b64(scannerUser+"\x00"+password+"\x00"+scannerPassword), "535 5.7.8 ")
	logs := ts.logs.String()
	if strings.Contains(logs, password) {
		t.Errorf("log contains the password:\n%s", logs)
	}
	if !strings.Contains(logs, "unknown, 21 bytes, not logged") {
		t.Errorf("failure not logged:\n%s", logs)
	}
}

// TestCheckPoolTakesTurns: a flood of checks from one address waits behind
// itself while another address is served next.
func TestCheckPoolTakesTurns(t *testing.T) {
	p := newCheckPool()
	flood, printer := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")
	never := make(chan struct{})
	if !p.acquire(flood, 1, never) {
		t.Fatal("free pool refused")
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queued := 0
	enqueue := func(client netip.Addr, name string) {
		queued++
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(client, 1, never, func() {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
			})
		}()
		waitForServer(t, name+" waits", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			n := 0
			for _, q := range p.waiting {
				n += len(q)
			}
			return n == queued
		})
	}
	enqueue(flood, "flood1")
	enqueue(flood, "flood2")
	enqueue(flood, "flood3")
	enqueue(printer, "printer")
	p.release(1)
	wg.Wait()
	if got := strings.Join(order, " "); got != "flood1 printer flood2 flood3" {
		t.Errorf("served %s", got)
	}
	// A waiting check that gives up leaves the pool usable.
	if !p.acquire(flood, 1, never) {
		t.Fatal("pool not free after the checks")
	}
	cancel := make(chan struct{})
	close(cancel)
	if p.acquire(printer, 1, cancel) {
		t.Error("cancelled wait acquired a busy slot")
	}
	p.release(1)
	if p.busy != 0 || len(p.turns) != 0 || len(p.waiting) != 0 {
		t.Errorf("pool left busy=%d turns=%v waiting=%v", p.busy, p.turns, p.waiting)
	}
}
