package delivery

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
)

const (
	printers = "network:10.0.3.0/24"
	erp      = "user:erp"
)

// record records a delivered message, as an attempt does.
func record(t *testing.T, g *mailboxGuard, mailbox, identity string, n int, at time.Time) {
	t.Helper()
	if until, reason := g.reserve(mailbox, identity, n, at); reason != "" {
		t.Fatalf("held until %v: %s", until, reason)
	}
	g.settle(mailbox, identity, n, n, at)
}

// check asks whether a message may go, without sending it.
func check(g *mailboxGuard, mailbox, identity string, n int, now time.Time) (until time.Time, reason string) {
	until, reason = g.reserve(mailbox, identity, n, now)
	if reason == "" {
		g.settle(mailbox, identity, n, 0, now)
	}
	return until, reason
}

func TestMailboxGuard(t *testing.T) {
	g := newMailboxGuard()
	start := t0
	// 9,800 recipients in the morning from two identities, 150 at noon.
	for i := range 49 {
		record(t, g, "Scanner@contoso.com", []string{printers, erp}[i%2], 200, start.Add(time.Duration(i)*time.Minute))
	}
	noon := start.Add(4 * time.Hour)
	record(t, g, "scanner@contoso.com", erp, 150, noon)
	later := start.Add(6 * time.Hour)
	if until, reason := check(g, "scanner@contoso.com", printers, 50, later); reason != "" {
		t.Errorf("50 more (10,000 in all) held until %v", until)
	}
	// 51 more would pass 10,000: held until the first morning send is a
	// day old.
	if until, reason := check(g, "scanner@contoso.com", printers, 51, later); reason == "" || !until.Equal(start.Add(24*time.Hour)) {
		t.Errorf("51 more held until %v (%q), want until %v", until, reason, start.Add(24*time.Hour))
	}
	// 400 more need the first two sends gone.
	if until, reason := check(g, "scanner@contoso.com", erp, 400, later); reason == "" || !until.Equal(start.Add(24*time.Hour+time.Minute)) {
		t.Errorf("400 more held until %v (%q)", until, reason)
	}
	// Other mailboxes are not affected, and a day later all is free.
	if until, reason := check(g, "other@contoso.com", erp, 500, later); reason != "" {
		t.Errorf("another mailbox held until %v", until)
	}
	tomorrow := noon.Add(24 * time.Hour)
	if until, reason := check(g, "scanner@contoso.com", erp, 500, tomorrow); reason != "" {
		t.Errorf("a day later held until %v", until)
	}
}

// One identity alone may use its share of a mailbox's day and no more, so
// that the others sending as the mailbox keep the rest.
func TestMailboxGuardShare(t *testing.T) {
	g := newMailboxGuard()
	for i := range identityRecipientsPerDay / 500 {
		record(t, g, "noreply@contoso.com", erp, 500, t0.Add(time.Duration(i)*time.Minute))
	}
	now := t0.Add(time.Hour)
	until, reason := check(g, "noreply@contoso.com", erp, 1, now)
	if !until.Equal(t0.Add(24*time.Hour)) || !strings.Contains(reason, "identity "+erp) {
		t.Errorf("one more from the identity over its share: held until %v (%q)", until, reason)
	}
	if until, reason := check(g, "noreply@contoso.com", printers, mailboxRecipientsPerDay-identityRecipientsPerDay, now); reason != "" {
		t.Errorf("another identity held until %v: %s", until, reason)
	}
}

// Sends in flight count: four messages of one mailbox sent at once cannot
// each find room for themselves alone.
func TestMailboxGuardCountsSendsInFlight(t *testing.T) {
	g := newMailboxGuard()
	for range identityRecipientsPerDay/500 - 1 {
		record(t, g, mailbox, erp, 500, t0)
	}
	if until, reason := g.reserve(mailbox, erp, 500, t0); reason != "" {
		t.Fatalf("the last 500 of the share held until %v: %s", until, reason)
	}
	if _, reason := g.reserve(mailbox, erp, 500, t0); reason == "" {
		t.Fatal("500 more, while the last 500 are in flight, not held")
	}
	// The send in flight failed: its recipients are free again.
	g.settle(mailbox, erp, 500, 0, t0)
	if until, reason := check(g, mailbox, erp, 500, t0); reason != "" {
		t.Errorf("after a failed send, held until %v: %s", until, reason)
	}
}

// The red-team case: 21 messages of 500 recipients from one identity
// sharing a mailbox held all of that mailbox's mail for a day, while
// `queue show` said "next attempt now" and /status showed no hold. Now
// only that identity's messages wait, and every view says so.
func TestMailboxGuardHoldsOnlyTheGreedyIdentity(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := start(t, options{before: func(h *harness) { h.engine.metrics.register(reg, h.engine.Status) }})
	rcpts := make([]string, 500)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("r%d@example.net", i)
	}
	submit := func(identity string, recipients []string) string {
		return h.submitEnvelope(&envelope.Envelope{Identity: identity, Mailbox: mailbox, AllowedSenders: []string{mailbox},
			MailFrom: mailbox, Recipients: recipients, Received: h.clock.Now()})
	}
	var greedy []string
	for range 21 {
		greedy = append(greedy, submit(erp, rcpts))
	}
	sent := identityRecipientsPerDay / 500
	h.waitCount("the greedy identity's share", h.engine.metrics.delivered, sent)
	st := h.waitStatus("the rest held", func(st Status) bool { return st.Queue.Limited == 21-sent })
	if len(st.MailboxGuard) != 1 || st.MailboxGuard[0].Identity != erp || st.MailboxGuard[0].Messages != 21-sent ||
		!st.MailboxGuard[0].Until.After(t0.Add(23*time.Hour)) {
		t.Errorf("status mailbox guard = %+v", st.MailboxGuard)
	}
	if got := testutil.ToFloat64(h.engine.metrics.delivered); got != float64(sent) {
		t.Errorf("%v delivered, want the share of %d messages", got, sent)
	}

	// Another identity sharing the mailbox is not held.
	submit(printers, []string{"a@example.net", "b@example.net"})
	h.waitCount("the other identity's message", h.engine.metrics.delivered, sent+1)

	// The workers take the messages in no fixed order: show one of those
	// still in the spool.
	var d *queue.Detail
	for _, id := range greedy {
		if shown, err := h.spool.Show(id); err == nil {
			d = shown
			break
		}
	}
	if d == nil {
		t.Fatal("no held message left in the spool")
	}
	// (Its state reads "held" while its next attempt is in the future by
	// the real clock: TestHeldState.)
	if !d.NextAttempt.After(t0.Add(23*time.Hour)) || d.Attempts != 0 || !strings.Contains(d.Held, "identity "+erp) {
		t.Errorf("queue show of a held message: next attempt %v, %d attempts, held %q", d.NextAttempt, d.Attempts, d.Held)
	}
	if n := testutil.CollectAndCount(reg, "smtpgw_mailbox_guard_holds"); n != 1 {
		t.Errorf("smtpgw_mailbox_guard_holds: %d series", n)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP smtpgw_mailbox_guard_holds Identity and mailbox pairs whose messages the mailbox guard holds: the identity would pass its share of the mailbox's 10,000 recipients a day, or the mailbox would.
# TYPE smtpgw_mailbox_guard_holds gauge
smtpgw_mailbox_guard_holds 1
`), "smtpgw_mailbox_guard_holds"); err != nil {
		t.Error(err)
	}

	// A day later the held messages go.
	h.clock.Set(t0.Add(24*time.Hour + time.Minute))
	h.waitCount("the held messages", h.engine.metrics.delivered, 22)
	h.waitStatus("nothing held", func(st Status) bool { return st.Queue.Limited == 0 && len(st.MailboxGuard) == 0 })
}

// A message the guard still holds when its maximum age passes fails then,
// rather than wait a day beyond it.
func TestMailboxGuardHoldEndsAtMaxAge(t *testing.T) {
	h := start(t, options{queue: `max_age = "1h"`})
	rcpts := make([]string, 500)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("r%d@example.net", i)
	}
	share := identityRecipientsPerDay / 500
	var ids []string
	for range share + 1 {
		ids = append(ids, h.submitEnvelope(&envelope.Envelope{Identity: erp, Mailbox: mailbox, AllowedSenders: []string{mailbox},
			MailFrom: mailbox, Recipients: rcpts, Received: h.clock.Now()}))
	}
	h.waitCount("the share", h.engine.metrics.delivered, share)
	// The workers take the messages in no fixed order, and the status
	// counts the hold before its state is saved: wait for the saved hold.
	var last string
	h.waitStatus("one held", func(st Status) bool {
		for _, id := range ids {
			if s, err := h.spool.State(id); err == nil && s.Held != "" {
				last = id
			}
		}
		return st.Queue.Limited == 1 && last != ""
	})
	if st := h.state(last); !st.NextAttempt.Equal(t0.Add(time.Hour)) {
		t.Errorf("held until %v, want its maximum age %v", st.NextAttempt, t0.Add(time.Hour))
	}
	h.clock.Set(t0.Add(time.Hour))
	h.waitCount("the failure", h.engine.metrics.failed, 1)
	d, err := h.spool.Show(last)
	if err != nil || !strings.Contains(d.LastError, "gave up after 1h0m0s") || !strings.Contains(d.LastError, "identity "+erp) {
		t.Errorf("dead letter %+v, %v", d.LastError, err)
	}
}
