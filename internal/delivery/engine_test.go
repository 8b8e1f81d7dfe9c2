package delivery

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

const (
	mailbox = "scanner@contoso.com"
	sender  = "mfp@contoso.com"
)

// graphErr is a Graph failure as upstream classifies it.
func graphErr(status int, code string, retryAfter time.Duration) *upstream.Error {
	return upstream.GraphAnswer(status, code, retryAfter)
}

func TestRetryAfterHoldsTheMailbox(t *testing.T) {
	h := start(t, options{})
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		if len(h.target.callsFor("")) == 1 { // the very first send is throttled
			return graphErr(429, "ApplicationThrottled", 7*time.Second)
		}
		return nil
	}
	a := h.submit(mailbox, sender)
	h.waitCount("deferral", h.engine.metrics.deferred, 1)
	st := h.state(a)
	if !st.NextAttempt.Equal(t0.Add(7*time.Second)) || st.Attempts != 1 || !strings.Contains(st.LastError, "429") {
		t.Fatalf("state after 429 = %+v, want next attempt at t0+7s", st)
	}

	// Graph throttles the app and mailbox: the mailbox's other messages
	// wait too (its name compared case-insensitively); others do not.
	b := h.submit(strings.ToUpper(mailbox), sender)
	c := h.submit("other@contoso.com", sender)
	h.waitCalls(c, 1)
	h.clock.Advance(6 * time.Second)
	quiet()
	if n := len(h.target.callsFor(a)) + len(h.target.callsFor(b)); n != 1 {
		t.Fatalf("%d sends for the throttled mailbox before Retry-After, want 1", n)
	}
	h.clock.Advance(time.Second)
	for id, n := range map[string]int{a: 2, b: 1} {
		calls := h.waitCalls(id, n)
		if last := calls[n-1]; !last.at.Equal(t0.Add(7 * time.Second)) {
			t.Errorf("send of %s at t0+%s, want t0+7s", id, last.at.Sub(t0))
		}
	}
	h.waitCount("deliveries", h.engine.metrics.delivered, 3)
	if got := len(h.target.callsFor(a)); got != 2 {
		t.Errorf("%d attempts, want 2", got)
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	h := start(t, options{queue: "min_backoff = \"1m\"\nmax_backoff = \"4m\""})
	answers := []error{
		graphErr(503, "", 0),
		graphErr(500, "InternalServerError", 0),
		graphErr(503, "", 0),
		errors.New("connection reset"), // unknown causes are temporary too
	}
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		if attempt <= len(answers) {
			return answers[attempt-1]
		}
		return nil
	}
	const n = 6
	var ids []string
	for range n {
		ids = append(ids, h.submit(mailbox, sender))
	}
	jittered := false
	for round, base := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		h.waitCount("deferrals", h.engine.metrics.deferred, n*(round+1))
		now := h.clock.Now()
		var last time.Time
		delays := map[time.Duration]bool{}
		for _, id := range ids {
			st := h.state(id)
			d := st.NextAttempt.Sub(now)
			if d < base*8/10 || d > base*12/10 {
				t.Errorf("round %d: backoff %s, want %s ± 20%%", round+1, d, base)
			}
			delays[d] = true
			if st.Attempts != round+1 {
				t.Errorf("round %d: attempts = %d", round+1, st.Attempts)
			}
			if st.NextAttempt.After(last) {
				last = st.NextAttempt
			}
		}
		jittered = jittered || len(delays) > 1
		h.clock.Set(last)
	}
	if !jittered {
		t.Error("every message got the same backoff: no jitter")
	}
	h.waitCount("deliveries", h.engine.metrics.delivered, n)
	for _, id := range ids {
		if got := len(h.target.callsFor(id)); got != 5 {
			t.Errorf("%s: %d attempts, want 5", id, got)
		}
	}
}

// bounceCalls returns the sends of non-delivery reports.
func (h *harness) bounceCalls() []call {
	var out []call
	for _, c := range h.target.callsFor("") {
		if c.env.Identity == "bounce" {
			out = append(out, c)
		}
	}
	return out
}

func checkBounce(t *testing.T, c call, original string) {
	t.Helper()
	env := c.env
	if env.MailFrom != "" || !slices.Equal(env.Recipients, []string{sender}) || env.Mailbox != mailbox ||
		!slices.Equal(env.AllowedSenders, []string{mailbox}) {
		t.Errorf("bounce envelope = %+v", env)
	}
	if want := "Undeliverable: scan " + original; c.subject != want {
		t.Errorf("bounce subject = %q, want %q", c.subject, want)
	}
}

func TestMaxAge(t *testing.T) {
	h := start(t, options{queue: `
max_age = "10m"
min_backoff = "1m"
max_backoff = "4m"
`})
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		if env.Identity == "bounce" {
			return nil
		}
		return graphErr(503, "", 0)
	}
	id := h.submit(mailbox, sender)
	for i := 1; h.count(h.engine.metrics.failed) == 0; i++ {
		if i > 10 {
			t.Fatal("still not failed after 10 attempts")
		}
		h.waitFor("an outcome", func() bool {
			return h.count(h.engine.metrics.deferred) >= i || h.count(h.engine.metrics.failed) > 0
		})
		if h.count(h.engine.metrics.failed) == 0 {
			h.clock.Set(h.state(id).NextAttempt)
		}
	}
	d, err := h.spool.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != queue.StateFailed || !strings.Contains(d.LastError, "gave up after 10m0s") {
		t.Errorf("dead letter = %+v", d.Info)
	}
	if age := h.clock.Now().Sub(t0); age < 10*time.Minute || age > 15*time.Minute {
		t.Errorf("failed at t0+%s, want shortly after max age", age)
	}
	h.waitFor("the bounce", func() bool { return len(h.bounceCalls()) == 1 })
	checkBounce(t, h.bounceCalls()[0], id)
}

func TestPermanentFailures(t *testing.T) {
	tests := []struct {
		status int
		code   string
	}{
		{403, "ErrorSendAsDenied"},
		{404, "ErrorInvalidUser"},
		{400, "ErrorInvalidRecipients"},
		{413, "ErrorMessageSizeExceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			h := start(t, options{})
			h.target.answer = func(env *envelope.Envelope, attempt int) error {
				if env.Identity == "bounce" {
					return nil
				}
				return graphErr(tt.status, tt.code, 0)
			}
			id := h.submit(mailbox, sender)
			h.waitFor("the bounce", func() bool { return len(h.bounceCalls()) == 1 })
			h.stop()
			if got := len(h.target.callsFor(id)); got != 1 {
				t.Errorf("%d attempts, want exactly 1", got)
			}
			d, err := h.spool.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			if d.State != queue.StateFailed || !strings.Contains(d.LastError, tt.code) || d.Attempts != 1 {
				t.Errorf("dead letter = %+v", d.Info)
			}
			checkBounce(t, h.bounceCalls()[0], id)
			if ids, _ := h.spool.Queued(); len(ids) != 0 {
				t.Errorf("queue not empty: %v", ids)
			}
		})
	}
}

func TestNoBounce(t *testing.T) {
	tests := []struct {
		name     string
		mailFrom string
		header   []string
		queue    string
		bounce   bool
	}{
		{name: "null sender", mailFrom: ""},
		{name: "a report", mailFrom: sender, header: []string{`Content-Type: multipart/report; report-type=delivery-status; boundary="x"`}},
		{name: "an auto-reply", mailFrom: sender, header: []string{"Auto-Submitted: auto-replied"}},
		{name: "bounces off", mailFrom: sender, queue: "bounce = false"},
		{name: "auto-submitted no", mailFrom: sender, header: []string{"Subject: x", "Auto-Submitted: no"}, bounce: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, options{queue: tt.queue})
			h.target.answer = func(env *envelope.Envelope, attempt int) error {
				return graphErr(404, "ErrorInvalidUser", 0)
			}
			h.submit(mailbox, tt.mailFrom, tt.header...)
			h.waitCount("the failure", h.engine.metrics.failed, 1)
			if tt.bounce {
				h.waitCount("the bounce's failure", h.engine.metrics.failed, 2)
			}
			h.stop() // waits for the attempt, bounce included
			want := 0
			if tt.bounce {
				want = 1
			}
			if got := len(h.bounceCalls()); got != want {
				t.Errorf("%d bounces sent, want %d", got, want)
			}
			if ids, _ := h.spool.Queued(); len(ids) != 0 {
				t.Errorf("queue not empty: %v", ids)
			}
		})
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	h := start(t, options{})
	h.target.block = make(chan struct{})
	id := h.submit(mailbox, sender)
	h.waitCalls(id, 1)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.engine.Shutdown(ctx)
	}()
	quiet()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a send was in flight", err)
	default:
	}
	late := h.submit(mailbox, sender) // accepted while stopping: stays queued
	close(h.target.block)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if ids, _ := h.spool.Queued(); !slices.Equal(ids, []string{late}) {
		t.Errorf("queue after shutdown = %v, want only %s", ids, late)
	}
	if got := len(h.target.callsFor(late)); got != 0 {
		t.Errorf("message sent during shutdown")
	}
}

func TestShutdownTimeoutKeepsMessage(t *testing.T) {
	h := start(t, options{})
	h.target.block = make(chan struct{}) // never closed: a hanging Graph call
	id := h.submit(mailbox, sender)
	h.waitCalls(id, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.engine.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	// The cancelled call is no attempt: the message is due at once at the
	// next start, its attempts not counted.
	st := h.state(id)
	if st.Attempts != 0 || st.NextAttempt.After(t0) {
		t.Errorf("state after interrupted attempt = %+v", st)
	}
	if h.count(h.engine.metrics.deferred)+h.count(h.engine.metrics.failed) != 0 {
		t.Error("an interrupted attempt counted as a failure")
	}

	h2 := start(t, options{spool: h.spool})
	h2.waitCount("delivery after restart", h2.engine.metrics.delivered, 1)
}

// A crash during a Graph call leaves the attempt recorded: after a restart
// the message waits for its next attempt time rather than going at once.
func TestRestartHonoursRecordedAttempt(t *testing.T) {
	var id string
	h := start(t, options{before: func(h *harness) {
		id = h.submit(mailbox, sender)
		st := queue.State{Attempts: 1, LastAttempt: t0, NextAttempt: t0.Add(time.Minute)}
		if err := h.spool.SaveState(id, st); err != nil {
			t.Fatal(err)
		}
	}})
	quiet()
	if got := len(h.target.callsFor(id)); got != 0 {
		t.Fatalf("sent before its next attempt time")
	}
	h.clock.Advance(time.Minute)
	calls := h.waitCalls(id, 1)
	if !calls[0].at.Equal(t0.Add(time.Minute)) {
		t.Errorf("sent at t0+%s, want t0+1m", calls[0].at.Sub(t0))
	}
	h.waitCount("delivery", h.engine.metrics.delivered, 1)
	if ids, _ := h.spool.Queued(); len(ids) != 0 {
		t.Errorf("queue not empty: %v", ids)
	}
}

func TestBurstToOneSlowMailbox(t *testing.T) {
	const total = 40
	var ids []string
	h := start(t, options{realClock: true, before: func(h *harness) {
		h.target.delay = 20 * time.Millisecond
		for range total / 2 { // found in the spool at start
			ids = append(ids, h.submit(mailbox, sender))
		}
	}})
	for range total / 2 { // arriving while it runs
		ids = append(ids, h.submit(mailbox, sender))
	}
	h.waitCount("deliveries", h.engine.metrics.delivered, total)
	for _, id := range ids {
		if got := len(h.target.callsFor(id)); got != 1 {
			t.Errorf("%s sent %d times, want once", id, got)
		}
	}
	if got := len(h.target.callsFor("")); got != total {
		t.Errorf("%d sends, want %d", got, total)
	}
	if peak := h.target.peakFor(mailbox); peak > 4 || peak < 3 {
		t.Errorf("peak in flight for the mailbox = %d, want 3 or 4", peak)
	}
}

func TestBusyMailboxDoesNotStarveOthers(t *testing.T) {
	const busy, quietBox = "busy@contoso.com", "quiet@contoso.com"
	h := start(t, options{realClock: true, queue: "workers = 4", before: func(h *harness) {
		h.target.delay = 10 * time.Millisecond
		for range 40 {
			h.submit(busy, sender)
		}
	}})
	h.waitCalls("", 4)
	var others []string
	for range 3 {
		others = append(others, h.submit(quietBox, sender))
	}
	h.waitCount("deliveries", h.engine.metrics.delivered, 43)
	calls := h.target.callsFor("")
	for i, c := range calls {
		if slices.Contains(others, c.id) && i > 16 {
			t.Errorf("quiet mailbox's message sent as number %d of 43: starved", i+1)
		}
	}
	if peak := h.target.peakFor(busy); peak > 4 {
		t.Errorf("peak in flight = %d, want at most 4", peak)
	}
}

func TestOldestFirst(t *testing.T) {
	var ids []string
	h := start(t, options{queue: "workers = 1", before: func(h *harness) {
		for range 5 {
			ids = append(ids, h.submit(mailbox, sender))
			h.clock.Advance(time.Millisecond)
		}
	}})
	h.waitCount("deliveries", h.engine.metrics.delivered, 5)
	var order []string
	for _, c := range h.target.callsFor("") {
		order = append(order, c.id)
	}
	if !slices.Equal(order, ids) {
		t.Errorf("delivery order = %v, want %v", order, ids)
	}
}

// Admin commands change the spool behind the running engine's back.
func TestAdminChangesWhileRunning(t *testing.T) {
	h := start(t, options{})
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		switch {
		case env.Identity == "bounce":
			return nil
		case strings.HasPrefix(env.Mailbox, "retry") && attempt == 1,
			strings.HasPrefix(env.Mailbox, "delete"):
			return graphErr(503, "", 0)
		case strings.HasPrefix(env.Mailbox, "dead") && attempt == 1:
			return graphErr(404, "ErrorInvalidUser", 0)
		}
		return nil
	}
	retried := h.submit("retry@contoso.com", sender)
	deleted := h.submit("delete@contoso.com", sender)
	dead := h.submit("dead@contoso.com", "")
	h.waitCount("deferrals", h.engine.metrics.deferred, 2)
	h.waitCount("failure", h.engine.metrics.failed, 1)

	admin, err := queue.OpenExisting(h.spool.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { return admin.Retry(retried) },
		func() error { return admin.Delete(deleted) },
		func() error { _, err := admin.RetryFailed(); return err },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	// The poke is noticed within a second, long before any backoff ends.
	h.clock.Advance(time.Second)
	h.waitCount("deliveries", h.engine.metrics.delivered, 2)
	for _, id := range []string{retried, dead} {
		if calls := h.target.callsFor(id); len(calls) != 2 || !calls[1].at.Equal(t0.Add(time.Second)) {
			t.Errorf("%s: calls %+v, want a second one at t0+1s", id, calls)
		}
	}
	h.clock.Advance(2 * time.Hour)
	quiet()
	if got := len(h.target.callsFor(deleted)); got != 1 {
		t.Errorf("deleted message sent %d times, want 1", got)
	}
	if ids, _ := h.spool.Queued(); len(ids) != 0 {
		t.Errorf("queue not empty: %v", ids)
	}
}

func TestConversionFailureIsPermanent(t *testing.T) {
	h := start(t, options{convert: func(raw io.ReaderAt, size int64, env *envelope.Envelope) (*convert.Result, error) {
		if env.Identity == "bounce" {
			return fakeConvert(raw, size, env)
		}
		return nil, errors.New("malformed MIME")
	}})
	id := h.submit(mailbox, sender)
	h.waitFor("the bounce", func() bool { return len(h.bounceCalls()) == 1 })
	if got := len(h.target.callsFor(id)); got != 0 {
		t.Errorf("%d sends of an unconvertible message", got)
	}
	d, err := h.spool.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != queue.StateFailed || d.LastError != "conversion failed: malformed MIME" {
		t.Errorf("dead letter = %+v", d.Info)
	}
}

func TestCorruptMessageIsKept(t *testing.T) {
	const id = "0000000000000corrupt"
	h := start(t, options{before: func(h *harness) {
		os.WriteFile(filepath.Join(h.spool.Dir(), "queue", id+".msg"), []byte("not an envelope\n"), 0o640)
	}})
	h.waitCount("failure", h.engine.metrics.failed, 1)
	list, err := h.spool.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != id || list[0].State != queue.StateFailed || !strings.Contains(list[0].LastError, "corrupt") {
		t.Errorf("spool = %+v, want the corrupt message failed", list)
	}
}

// A message's first attempt takes it as the spool committed it rather than
// reading it back; deleted by an admin before that attempt, it is still
// never sent, even when no rescan came in between.
func TestDeletedBeforeFirstAttempt(t *testing.T) {
	h := start(t, options{queue: "workers = 1"})
	h.target.block = make(chan struct{})
	first := h.submit(mailbox, sender)
	h.waitCalls(first, 1)
	deleted := h.submit(mailbox, sender) // waits for the only worker
	admin, err := queue.OpenExisting(h.spool.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Delete(deleted); err != nil {
		t.Fatal(err)
	}
	close(h.target.block) // the clock stands still: no rescan notices the poke
	last := h.submit(mailbox, sender)
	h.waitCalls(last, 1)
	if got := len(h.target.callsFor(deleted)); got != 0 {
		t.Errorf("message deleted before its first attempt sent %d times", got)
	}
}
