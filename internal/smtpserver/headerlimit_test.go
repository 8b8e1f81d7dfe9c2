package smtpserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
)

// startLargeServer starts a server with one plain listener for the
// allowlisted loopback network that takes messages of 4 MiB, larger than
// the header limit, and keeps minFree (TOML) free in its spool.
func startLargeServer(t *testing.T, minFree string) *testServer {
	t.Helper()
	cfg, err := config.Parse([]byte(`
[server]
hostname = "smtpgw.test"
max_message_size = "4MiB"
[[listener]]
address = "127.0.0.1:0"
[outbox]
dir = "unused"
[queue]
min_free_space = `+minFree+`
[[network]]
cidrs = ["127.0.0.1"]
mailbox = "noreply@contoso.com"
allowed_senders = ["*@contoso.com"]
`+testLimits), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, cfg)
}

// The header is refused while it streams in, whatever its shape, with the
// size reply: nothing reaches the queue and nothing is left in tmp/.
func TestHeaderTooLarge(t *testing.T) {
	ts := startLargeServer(t, "1")
	filler := strings.Repeat("x", 3<<20)
	shapes := map[string]string{
		"many short lines": strings.Repeat("X-A: b\r\n", convert.MaxHeaderBytes/8+1) + "\r\nbody\r\n",
		"too many fields":  strings.Repeat("X-A: b\r\n", convert.MaxHeaderFields+1) + "\r\nbody\r\n",
		"one folded field": "To: a@contoso.com" + strings.Repeat(",\r\n b@contoso.com", convert.MaxHeaderBytes/16) + "\r\n\r\nbody\r\n",
		"one long line":    "Subject: " + filler + "\r\n\r\nbody\r\n",
		"no header end":    strings.Repeat("X-A: b\r\n", (3<<20)/8),
	}
	for name, msg := range shapes {
		t.Run(name, func(t *testing.T) {
			c := ts.dial(t, 0)
			_, err := send(c, "printer@contoso.com", []string{"a@example.com"}, msg)
			wantSMTPError(t, err, 552, smtp.EnhancedCode{5, 3, 4})
			// The connection goes on.
			if _, err := send(c, "printer@contoso.com", []string{"a@example.com"}, testMessage); err != nil {
				t.Fatalf("next message: %v", err)
			}
		})
	}
	if n := len(ts.queued(t)); n != len(shapes) {
		t.Errorf("%d messages queued, want only the %d good ones", n, len(shapes))
	}
	if left := ts.leftovers(t); len(left) != 0 {
		t.Errorf("left in the spool: %v", left)
	}

	// A large header within the limits, and a large body, pass.
	within := strings.Repeat("X-A: b\r\n", convert.MaxHeaderFields-1) + "Subject: s\r\n\r\n" + strings.Repeat(filler[:998]+"\r\n", 3000)
	if _, err := send(ts.dial(t, 0), "printer@contoso.com", []string{"a@example.com"}, within); err != nil {
		t.Errorf("large message with a header within the limits: %v", err)
	}
}

// Over BDAT the refusal comes at once and the connection closes, rather
// than go-smtp reading the rest of the chunk.
func TestHeaderTooLargeBDAT(t *testing.T) {
	ts := startLargeServer(t, "1")
	r := dialRaw(t, ts.addrs[0], nil, nil)
	r.greet()
	r.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	chunk := strings.Repeat("X-A: b\r\n", convert.MaxHeaderBytes/8+1)
	fmt.Fprintf(r.text.W, "BDAT %d LAST\r\n%s", 2*len(chunk), chunk)
	r.text.W.Flush()
	if got := r.reply(); !strings.HasPrefix(got, "552 5.3.4 ") {
		t.Fatalf("reply %q, want 552 5.3.4", got)
	}
	if !r.closed() {
		t.Error("connection still open")
	}
}
