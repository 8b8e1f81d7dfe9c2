package smtpserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// waitForServer retries f until it holds: the server notices a closed
// connection a little after the client closes it.
func waitForServer(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for attempt := 0; !f(); attempt++ {
		if attempt > 200 || time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnectionsPerAddress(t *testing.T) {
	ts := startServer(t, parseConfig(t, `
[[network]]
cidrs = ["127.0.0.5"]
mailbox = "branch@contoso.com"
connections_per_address = 3
`+testLimits+"connections_per_address = 2\n"))
	addr := ts.addrs[plainListener]
	hold := func(source string, n int) []*rawConn {
		var conns []*rawConn
		for range n {
			r := dialRaw(t, addr, nil, from(source))
			r.greet()
			conns = append(conns, r)
		}
		return conns
	}
	held := hold("127.0.0.2", 2)
	over := dialRaw(t, addr, nil, from("127.0.0.2"))
	if got := over.reply(); !strings.HasPrefix(got, "421 4.7.0 ") {
		t.Fatalf("third connection from one address got %q, want 421 4.7.0", got)
	}
	if !over.closed() {
		t.Error("refused connection left open")
	}
	// Another address is not locked out, on this listener or another.
	hold("127.0.1.3", 2)
	other := dialRaw(t, ts.addrs[insecureAuthListener], nil, from("127.0.0.4"))
	other.greet()
	// A network may raise the limit for its addresses (NAT).
	hold("127.0.0.5", 3)
	if got := dialRaw(t, addr, nil, from("127.0.0.5")).reply(); !strings.HasPrefix(got, "421 4.7.0 ") {
		t.Errorf("fourth connection from the NAT address got %q", got)
	}
	// A slot frees up once a client leaves.
	held[0].cmd("QUIT", "221 ")
	waitForServer(t, "a slot frees up", func() bool {
		return strings.HasPrefix(dialRaw(t, addr, nil, from("127.0.0.2")).reply(), "220 ")
	})
}

func TestConnectionsPerMinute(t *testing.T) {
	ts := startServer(t, parseConfig(t, testLimits+"connections_per_minute = 3\n"))
	addr := ts.addrs[plainListener]
	for range 3 {
		r := dialRaw(t, addr, nil, from("127.0.0.2"))
		r.greet()
		r.cmd("QUIT", "221 ")
	}
	// Counted as they end, which follows the 221 closely.
	waitForServer(t, "the fourth connection in a minute is refused", func() bool {
		return strings.HasPrefix(dialRaw(t, addr, nil, from("127.0.0.2")).reply(), "421 4.7.0 ")
	})
	dialRaw(t, addr, nil, from("127.0.0.3")).greet()
}

func TestRefusedCommandsEndTheConnection(t *testing.T) {
	ts := startServer(t, parseConfig(t, `
[limits]
error_delay = "20ms"
auth_min_duration = "1ms"
`))
	r := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.2"))
	r.greet()
	var slowest time.Duration
	for i := 1; i <= 10; i++ {
		start := time.Now()
		r.cmd("MAIL FROM:<printer@contoso.com>", "530 5.7.0 ")
		if i == 5 {
			slowest = time.Since(start)
		}
	}
	// The fifth error is the second beyond errors_before_delay (3).
	if slowest < 40*time.Millisecond {
		t.Errorf("fifth refusal answered after %v, want at least 40ms", slowest)
	}
	r.cmd("MAIL FROM:<printer@contoso.com>", "421 4.7.0 ")
	if !r.closed() {
		t.Fatal("connection still open after max_errors refusals")
	}
	if logs := ts.logs.String(); strings.Count(logs, "msg=refused") != 11 {
		t.Errorf("want 11 refusals logged:\n%s", logs)
	}
	if got := testutil.ToFloat64(ts.metrics.refused.WithLabelValues("errors")); got != 1 {
		t.Errorf("closes for max_errors counted %v times, want 1", got)
	}
}

func TestSessionLifetime(t *testing.T) {
	ts := startServer(t, parseConfig(t, testLimits+"session_lifetime = \"300ms\"\n"))
	r := dialRaw(t, ts.addrs[plainListener], nil, nil)
	r.greet()
	start := time.Now()
	for i := 0; ; i++ {
		// NOOP and RSET keep the session busy but cannot extend it.
		r.text.PrintfLine("NOOP")
		if got := r.reply(); strings.HasPrefix(got, "421 ") {
			break
		}
		if i > 100 {
			t.Fatal("session outlived its lifetime")
		}
		time.Sleep(30 * time.Millisecond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("session ended after %v", d)
	}
	if !r.closed() {
		t.Error("connection open after its lifetime")
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, parseConfig(t, testLimits+"idle_timeout = \"200ms\"\n"))
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), nil)
	r.greet()
	if got := r.reply(); !strings.HasPrefix(got, "421 4.4.2 ") {
		t.Errorf("idle client got %q", got)
	}
	if !r.closed() {
		t.Error("idle connection left open")
	}
}

func TestOversizedBDATCloses(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[plainListener], nil, nil)
	r.greet()
	r.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	// A chunk announced at 1 GB; the server stops after max_message_size.
	// Lines, since go-smtp applies its line limit to what arrives with the
	// command.
	chunk := strings.Repeat(strings.Repeat("x", 98)+"\r\n", maxMessageSize/100+1)[:maxMessageSize+1]
	fmt.Fprintf(r.text.W, "BDAT 1000000000 LAST\r\n%s", chunk)
	r.text.W.Flush()
	if got := r.reply(); !strings.HasPrefix(got, "552 5.3.4 ") {
		t.Fatalf("oversized BDAT got %q", got)
	}
	if !r.closed() {
		t.Error("connection open after an oversized BDAT chunk")
	}
}

func TestEmptyMessage(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[plainListener], nil, nil)
	r.greet()
	r.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.bdat("", true, "554 5.6.0 ")
	r.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.cmd("DATA", "354 ")
	r.cmd(".", "554 5.6.0 ")
	if ids := ts.queued(t); len(ids) != 0 {
		t.Errorf("empty messages queued: %v", ids)
	}
}

func TestAddressSizes(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[plainListener], nil, nil)
	r.greet()
	r.cmd("MAIL FROM:<"+strings.Repeat("a", 65)+"@contoso.com>", "553 5.1.3 ")
	r.cmd("MAIL FROM:<"+strings.Repeat("a", 64)+"@contoso.com>", "250 ")
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + ".com"
	r.cmd("RCPT TO:<"+long+">", "501 5.1.3 ")
	r.cmd("RCPT TO:<a\x07b@example.com>", "501 5.1.3 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.cmd("MAIL FROM:<printer\x07@contoso.com>", "553 5.1.3 ")
}

func TestHTTPRequestCloses(t *testing.T) {
	ts := startServer(t, testConfig(t))
	for _, request := range []string{"GET / HTTP/1.1", "POST /x HTTP/1.1", "CONNECT smtpgw.test:25 HTTP/1.1"} {
		r := dialRaw(t, ts.addrs[startTLSListener], nil, nil)
		if got := r.reply(); !strings.HasPrefix(got, "220 ") {
			t.Fatalf("greeting %q", got)
		}
		r.text.PrintfLine("%s", request)
		r.text.PrintfLine("Host: smtpgw.test")
		if !r.closed() {
			t.Errorf("%q: connection left open", request)
		}
	}
	// A command later in the session is only an unknown command.
	r := dialRaw(t, ts.addrs[plainListener], nil, nil)
	r.greet()
	r.cmd("GET / HTTP/1.1", "501 ")
}

// TestLimitsSurviveReload: a reload applies new [limits] and keeps what was
// counted so far.
func TestLimitsSurviveReload(t *testing.T) {
	ts := startServer(t, parseConfig(t, testLimits+"connections_per_minute = 2\n"))
	addr := ts.addrs[plainListener]
	visit := func() {
		r := dialRaw(t, addr, nil, from("127.0.0.2"))
		r.greet()
		r.cmd("QUIT", "221 ")
		r.closed()
	}
	for range 2 {
		visit()
	}
	waitForServer(t, "the third connection is refused", func() bool {
		return strings.HasPrefix(dialRaw(t, addr, nil, from("127.0.0.2")).reply(), "421 4.7.0 ")
	})
	if err := ts.reload(parseConfig(t, testLimits+"connections_per_minute = 3\n")); err != nil {
		t.Fatal(err)
	}
	visit()
	if got := dialRaw(t, addr, nil, from("127.0.0.2")).reply(); !strings.HasPrefix(got, "421 4.7.0 ") {
		t.Fatalf("fourth connection after the reload got %q", got)
	}
}
