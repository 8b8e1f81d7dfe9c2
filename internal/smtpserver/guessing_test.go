package smtpserver

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// login tries one AUTH PLAIN on a new implicit-TLS connection from source
// and returns the reply.
func (ts *testServer) login(t *testing.T, source, user, password string) string {
	t.Helper()
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), from(source))
	defer r.conn.Close()
	r.greet()
	r.text.PrintfLine("AUTH PLAIN %s", plainIR(user, password))
	return r.reply()
}

// TestPasswordGuessingThrottled: an address that keeps failing is
// throttled, its neighbours are not; a network where many addresses fail
// is throttled whole, and another network still logs in.
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
	// The cool-down refuses the right password too, from that address.
	waitForServer(t, "the cancelled exchanges count", func() bool {
		return strings.HasPrefix(ts.login(t, "127.0.0.2", scannerUser, scannerPassword), "454 4.7.0 ")
	})
	// One device retrying a stale password does not lock out its /24.
	if got := ts.login(t, "127.0.0.3", scannerUser, scannerPassword); !strings.HasPrefix(got, "235 ") {
		t.Errorf("right password from a neighbour got %q", got)
	}
	// Guessing from many addresses of one /24 throttles all of it.
	for i := range 5 {
		ts.login(t, fmt.Sprintf("127.0.5.%d", 10+i), scannerUser, "guess")
	}
	if got := ts.login(t, "127.0.5.99", scannerUser, scannerPassword); !strings.HasPrefix(got, "454 4.7.0 Too many failed logins") {
		t.Errorf("right password from a guessing /24 got %q", got)
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
	if !strings.Contains(logs, "unknown, not logged") {
		t.Errorf("failure not logged:\n%s", logs)
	}
}
