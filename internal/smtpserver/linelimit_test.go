package smtpserver

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// DATA takes lines of any length up to the message size, with or without
// TLS (STARTTLS replaces the connection's reader), and the next message on
// the same connection too.
func TestLongDataLine(t *testing.T) {
	ts := startServer(t, testConfig(t))
	html := "<html><body>" + strings.Repeat("<p>scan</p>", (maxMessageSize-1000)/11) + "</body></html>"
	msg := "From: printer@contoso.com\r\nSubject: one line\r\nContent-Type: text/html\r\n\r\n" + html + "\r\n"
	for _, listener := range []int{plainListener, startTLSListener, implicitListener} {
		c := ts.dial(t, listener)
		for range 2 {
			status, err := send(c, "printer@contoso.com", []string{"a@example.com"}, msg)
			if err != nil {
				t.Fatalf("listener %d: %v", listener, err)
			}
			if _, raw := ts.spooled(t, queueID(t, status)); raw != msg {
				t.Fatalf("listener %d: spooled %d bytes, want the %d sent", listener, len(raw), len(msg))
			}
		}
	}
}

// A message over the size limit is refused for good (5xx), long lines or
// not, and commands keep their 2,000-byte limit.
func TestLineLimits(t *testing.T) {
	ts := startServer(t, testConfig(t))
	c := ts.dial(t, plainListener)
	_, err := send(c, "printer@contoso.com", []string{"a@example.com"}, "Subject: big\r\n\r\n"+strings.Repeat("x", maxMessageSize)+"\r\n")
	wantSMTPError(t, err, 552, smtp.EnhancedCode{5, 3, 4})

	r := dialRaw(t, ts.addrs[plainListener], nil, nil)
	r.greet()
	r.cmd("NOOP "+strings.Repeat("x", 1990), "250 ")
	r.cmd("NOOP "+strings.Repeat("x", 2000), "500 5.4.0 ")
	if !r.closed() {
		t.Error("connection still open after an over-long command")
	}
}
