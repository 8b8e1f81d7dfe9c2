package smtpserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// bdat sends one BDAT chunk and checks the reply.
func (r *rawConn) bdat(chunk string, last bool, want string) string {
	r.t.Helper()
	cmd := fmt.Sprintf("BDAT %d", len(chunk))
	if last {
		cmd += " LAST"
	}
	fmt.Fprintf(r.text.W, "%s\r\n%s", cmd, chunk)
	if err := r.text.W.Flush(); err != nil {
		r.t.Fatal(err)
	}
	got := r.reply()
	if len(got) < len(want) || got[:len(want)] != want {
		r.t.Fatalf("%s: got %q, want %q", cmd, got, want)
	}
	return got
}

// TestBDAT covers CHUNKING, where go-smtp runs Data in a goroutine of its
// own while RSET may arrive.
func TestBDAT(t *testing.T) {
	ts := startServer(t, testConfig(t))
	start := time.Now()
	r := dialRaw(t, ts.addrs[plainListener], nil, nil)
	r.greet()

	r.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.bdat(testMessage[:20], false, "250 2.0.0 ")
	id := queueID(t, r.bdat(testMessage[20:], true, "250 2.0.0 OK: queued as "))
	env, raw := ts.spooled(t, id)
	if raw != testMessage || env.MailFrom != "printer@contoso.com" || env.Received.Before(start) {
		t.Errorf("spooled %+v %q", env, raw)
	}

	// A transfer abandoned half-way leaves nothing behind.
	r.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.bdat(testMessage[:20], false, "250 2.0.0 ")
	r.cmd("RSET", "250 ")
	deadline := time.Now().Add(5 * time.Second)
	for attempt := 0; ; attempt++ {
		left := ts.leftovers(t)
		if len(left) == 0 {
			break
		}
		if attempt > 100 || time.Now().After(deadline) {
			t.Fatalf("abandoned transfer left %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ids := ts.queued(t); len(ids) != 1 {
		t.Errorf("queue %v, want only %s", ids, id)
	}
	// A chunk above the size limit: TestOversizedBDATCloses. Not on this
	// connection: go-smtp's goroutine of the abandoned transfer reads its
	// result channel unsynchronized, racing with the next BDAT.
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, testConfig(t))
	reg := prometheus.NewRegistry()
	if err := ts.Register(reg); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), nil)
	r.greet()
	r.cmd("AUTH PLAIN "+plainIR(scannerUser, "wrong"), "535 5.7.8 ")
	r.cmd("AUTH PLAIN "+plainIR(scannerUser, scannerPassword), "235 ")
	r.cmd("MAIL FROM:<other@contoso.com>", "550 5.7.1 ")
	r.cmd("MAIL FROM:<"+scannerMailbox+">", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.data(testMessage, "250 ")

	if got := testutil.ToFloat64(ts.metrics.accepted); got != 1 {
		t.Errorf("accepted %v", got)
	}
	if got := testutil.ToFloat64(ts.metrics.authFailures); got != 1 {
		t.Errorf("auth failures %v", got)
	}
	if got := testutil.ToFloat64(ts.metrics.refused.WithLabelValues("sender")); got != 1 {
		t.Errorf("refused sender %v", got)
	}
}
