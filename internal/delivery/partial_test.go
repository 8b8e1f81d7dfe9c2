package delivery

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// A way out that failed after some recipients got the message (Exchange's
// SMTP, a later transaction failing): the spool records them, and the next
// try leaves them out.
func TestRetrySkipsRecipientsThatGotIt(t *testing.T) {
	h := start(t, options{queue: "min_backoff = \"1m\"\nmax_backoff = \"1m\""})
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		if attempt == 1 {
			return &receiptAnswer{receipt: upstream.Receipt{Delivered: []string{"rcpt@example.net"}}, err: graphErr(503, "", 0)}
		}
		return nil
	}
	id := h.submit(mailbox, sender)
	h.waitCount("deferral", h.engine.metrics.deferred, 1)
	if st := h.state(id); strings.Join(st.Delivered, ",") != "rcpt@example.net" {
		t.Fatalf("state records %v as delivered", st.Delivered)
	}
	h.clock.Advance(2 * time.Minute)
	calls := h.waitCalls(id, 2)
	if got := strings.Join(calls[1].env.Recipients, ","); got != "other@example.net" {
		t.Errorf("the retry went to %s, want only other@example.net", got)
	}
	h.waitCount("delivery", h.engine.metrics.delivered, 1)
}

// A recipient refused alone gets a bounce; the message is delivered to
// the others.
func TestRecipientRefusedAloneIsBounced(t *testing.T) {
	h := start(t, options{})
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		if env.Identity == "bounce" {
			return nil
		}
		return &receiptAnswer{receipt: upstream.Receipt{Status: 250, RequestID: "250 2.0.0 OK",
			Refused: []upstream.RecipientFailure{{Recipient: "other@example.net", Reply: "550 5.1.1 unknown user", Status: "5.1.1"}}}}
	}
	id := h.submit(mailbox, sender)
	h.waitCount("delivery and bounce", h.engine.metrics.delivered, 2)
	bounces := h.bounceCalls()
	if len(bounces) != 1 {
		t.Fatalf("%d bounces, want 1", len(bounces))
	}
	checkBounce(t, bounces[0], id)
}

// The mailbox guard counts a recipient once, when it received the message:
// a retry after some recipients got it reserves room for the others only.
func TestRetryReservesOnlyPendingRecipients(t *testing.T) {
	h := start(t, options{queue: "min_backoff = \"1m\"\nmax_backoff = \"1m\""})
	g, key := h.engine.mailboxes, strings.ToLower(mailbox)
	reserved := make(chan int, 1)
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		if attempt == 1 {
			return &receiptAnswer{receipt: upstream.Receipt{Delivered: []string{"rcpt@example.net"}}, err: graphErr(503, "", 0)}
		}
		g.mu.Lock()
		reserved <- g.inFlight[key]
		g.mu.Unlock()
		return nil
	}
	sent := func() int { return g.sent.Count(key, h.clock.Now(), mailboxRecipientWindow) }
	h.submit(mailbox, sender)
	h.waitFor("the recipient that got it counted", func() bool { return sent() == 1 })
	h.clock.Advance(2 * time.Minute)
	h.waitCount("delivery", h.engine.metrics.delivered, 1)
	if n := <-reserved; n != 1 {
		t.Errorf("the retry reserved %d recipients, want 1", n)
	}
	h.waitFor("both recipients counted", func() bool { return sent() >= 2 })
	quiet()
	if n := sent(); n != 2 {
		t.Errorf("%d recipients counted, want 2", n)
	}
}
