package delivery

import (
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/testlog"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// wrongSecret is Entra ID refusing the client secret, as upstream reports it.
var wrongSecret = &upstream.Error{
	Kind: upstream.KindCredential, Scope: upstream.ScopeTarget, Status: 401,
	Code: "invalid_client", AADSTS: "AADSTS7000215", Message: "AADSTS7000215: Invalid client secret provided.",
	Explanation: "Create a new client secret.", RequestID: "trace-1", ClientRequestID: "corr-1",
}

// waitStatus waits until the engine's status satisfies cond. Status goes
// through the delivery loop, so once it does, the loop has acted on every
// result that led there and armed its timer for what comes next.
func (h *harness) waitStatus(what string, cond func(Status) bool) Status {
	h.t.Helper()
	var st Status
	h.waitFor(what, func() bool { st = h.engine.Status(); return cond(st) })
	return st
}

// settle gives the engine a moment to act on a clock change and then
// waits for its loop to be idle, with its timer armed for what comes next.
func (h *harness) settle() {
	quiet()
	h.engine.Status()
}

// A refused credential holds every message, spends no attempt, bounces
// nothing; one probe per interval, the interval doubling, re-reads the
// credential and sends the oldest message; once one succeeds, all flow.
func TestCredentialRefusalHoldsEverything(t *testing.T) {
	var fixed atomic.Bool
	var ids []string
	h := start(t, options{
		queue: "min_probe_interval = \"30s\"\nmax_probe_interval = \"1m\"",
		before: func(h *harness) {
			// The answer is set before the engine starts, which sends at once.
			h.target.answer = func(env *envelope.Envelope, attempt int) error {
				if !fixed.Load() {
					return wrongSecret
				}
				return nil
			}
			for _, mb := range []string{mailbox, "other@contoso.com", mailbox} {
				ids = append(ids, h.submit(mb, sender))
			}
		},
	})
	h.waitCalls("", 3)
	st := h.waitStatus("the outage", func(st Status) bool { return !st.Upstream.Up && st.Queue.Held == 3 })
	down := st.Upstream.Down
	if down == nil || down.AADSTS != "AADSTS7000215" || down.Code != "invalid_client" || down.Explanation == "" ||
		down.RequestID != "trace-1" || !down.NextProbe.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("status = %+v", st.Upstream)
	}
	h.waitFor("the refusals recorded", func() bool {
		for _, id := range ids {
			if h.state(id).LastErrorCode == "" {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if s := h.state(id); s.Attempts != 0 || s.LastErrorCode != "AADSTS7000215" || s.RequestID != "trace-1" || s.ClientRequestID != "corr-1" {
			t.Errorf("state of %s = %+v, want no attempt spent and the refusal recorded", id, s)
		}
	}

	oldest := slices.Min(ids)
	probes := []time.Duration{30 * time.Second, 90 * time.Second, 150 * time.Second} // every 30 s, then 60 s, capped at 1 m
	for i, at := range probes {
		h.clock.Set(t0.Add(at - time.Second))
		h.settle()
		if n := len(h.target.callsFor("")); n != 3+i {
			t.Fatalf("%d sends before the probe due at t0+%s, want %d", n, at, 3+i)
		}
		h.clock.Set(t0.Add(at))
		// The probe's own call: once the last one succeeds, the others
		// may already follow it.
		calls := h.waitCalls("", 4+i)
		if probe := calls[3+i]; probe.id != oldest {
			t.Errorf("probe %d sent %s, want the oldest message %s", i+1, probe.id, oldest)
		}
		if i < len(probes)-1 {
			next := t0.Add(probes[i+1])
			h.waitStatus("the next probe", func(st Status) bool { return st.Upstream.Down != nil && st.Upstream.Down.NextProbe.Equal(next) })
		}
		if n := h.target.reloadCount(); n != i+1 {
			t.Errorf("credential re-read %d times before probe %d", n, i+1)
		}
		if i == len(probes)-2 {
			fixed.Store(true) // the admin writes the right secret
		}
	}
	h.waitCount("deliveries", h.engine.metrics.delivered, 3)
	h.waitStatus("the upstream up and the queue empty", func(st Status) bool {
		return st.Upstream.Up && st.Queue == QueueStatus{}
	})
	if h.count(h.engine.metrics.failed) != 0 || len(h.bounceCalls()) != 0 {
		t.Errorf("after the fix: %d failed, %d bounces", h.count(h.engine.metrics.failed), len(h.bounceCalls()))
	}
	for _, id := range ids {
		if n := len(h.target.callsFor(id)); id != oldest && n != 2 {
			t.Errorf("%s sent %d times, want twice: refused, then delivered", id, n)
		}
	}
}

// A 403 ErrorAccessDenied holds that mailbox's lane only: other mailboxes
// keep flowing, and the held one is probed until Graph takes it.
func TestMailboxRefusalHoldsOneLane(t *testing.T) {
	const other = "other@contoso.com"
	var fixed atomic.Bool
	h := start(t, options{})
	h.target.answer = func(env *envelope.Envelope, attempt int) error {
		if strings.EqualFold(env.Mailbox, mailbox) && !fixed.Load() {
			return graphErr(403, "ErrorAccessDenied", 0)
		}
		return nil
	}
	held := []string{h.submit(mailbox, sender)}
	h.waitStatus("the held mailbox", func(st Status) bool { return len(st.Upstream.HeldMailboxes) == 1 })
	held = append(held, h.submit(strings.ToUpper(mailbox), sender))
	h.submit(other, sender)
	h.submit(other, sender)
	h.waitCount("the other mailbox's deliveries", h.engine.metrics.delivered, 2)
	st := h.waitStatus("two held", func(st Status) bool { return st.Queue.Held == 2 })
	if !st.Upstream.Up || st.Upstream.HeldMailboxes[0].Mailbox != mailbox || st.Upstream.HeldMailboxes[0].Code != "ErrorAccessDenied" ||
		!strings.Contains(st.Upstream.HeldMailboxes[0].Explanation, "Test-ApplicationAccessPolicy") {
		t.Fatalf("status = %+v", st.Upstream)
	}
	if n := len(h.target.callsFor(held[1])); n != 0 {
		t.Errorf("a message of the held mailbox was sent %d times before the probe", n)
	}

	h.clock.Advance(30 * time.Second)
	h.waitFor("the probe", func() bool { return len(h.target.callsFor(held[0]))+len(h.target.callsFor(held[1])) == 2 })
	h.waitStatus("the next probe", func(st Status) bool {
		return len(st.Upstream.HeldMailboxes) == 1 && st.Upstream.HeldMailboxes[0].NextProbe.Equal(t0.Add(90*time.Second))
	})
	fixed.Store(true)
	h.clock.Set(t0.Add(90 * time.Second))
	h.waitCount("deliveries", h.engine.metrics.delivered, 4)
	h.waitStatus("the mailbox released and the queue empty", func(st Status) bool {
		return len(st.Upstream.HeldMailboxes) == 0 && st.Queue == QueueStatus{}
	})
	if h.count(h.engine.metrics.failed) != 0 {
		t.Error("a held message failed")
	}
}

// Held messages still fail when their maximum age passes, with a bounce
// that waits in the queue like any other message.
func TestMaxAgeFailsHeldMail(t *testing.T) {
	h := start(t, options{queue: "max_age = \"10m\"\nmax_probe_interval = \"5m\""})
	h.target.answer = func(env *envelope.Envelope, attempt int) error { return wrongSecret }
	id := h.submit(mailbox, sender)
	h.waitStatus("the outage", func(st Status) bool { return !st.Upstream.Up })
	h.clock.Set(t0.Add(10*time.Minute + 31*time.Second))
	h.waitCount("the failure", h.engine.metrics.failed, 1)
	d, err := h.spool.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != queue.StateFailed || d.Attempts != 0 || !strings.Contains(d.LastError, "gave up after 10m0s") || !strings.Contains(d.LastError, "AADSTS7000215") {
		t.Errorf("dead letter = %+v", d.Info)
	}
	st := h.waitStatus("the bounce held", func(st Status) bool { return st.Queue.Held == 1 && st.Queue.Failed == 1 })
	if st.Upstream.Up {
		t.Error("upstream up without a successful probe")
	}
	if len(h.bounceCalls()) > 0 && h.bounceCalls()[0].answered == nil {
		t.Error("a bounce went out through the refused credential")
	}
}

// Entra ID refusing the credential to a reading login starts the outage a
// refused send starts, with one ERROR line however often it is told;
// Entra ID issuing a token again ends it. A Graph refusal's outage does
// not end that way: only a send shows Graph takes the gateway again.
func TestCredentialRefusedOutsideSends(t *testing.T) {
	var logs testlog.Buffer
	h := start(t, options{before: func(h *harness) {
		h.engine.log = slog.New(slog.NewTextHandler(&logs, nil))
	}})
	refused := upstream.EntraAnswer(401, "invalid_client", "AADSTS7000215")
	for range 3 {
		h.engine.CredentialRefused(refused)
	}
	st := h.waitStatus("the outage", func(st Status) bool { return !st.Upstream.Up })
	if st.Upstream.Down == nil || st.Upstream.Down.AADSTS != "AADSTS7000215" || st.Upstream.Down.Explanation == "" {
		t.Errorf("status = %+v", st.Upstream)
	}
	h.engine.CredentialRefused(refused)
	h.settle()
	if n := strings.Count(logs.String(), "upstream down"); n != 1 {
		t.Errorf("%d upstream-down lines, want 1:\n%s", n, logs.String())
	}
	h.engine.CredentialRefused(wrongSecret) // not Entra ID's: ignored
	h.engine.CredentialAccepted()
	h.waitStatus("the end of the outage", func(st Status) bool { return st.Upstream.Up })
	if !strings.Contains(logs.String(), "upstream up") {
		t.Errorf("no upstream-up line:\n%s", logs.String())
	}

	// An outage Graph's refusal started stays until a send succeeds.
	h.target.answer = func(*envelope.Envelope, int) error { return upstream.GraphAnswer(401, "InvalidAuthenticationToken", 0) }
	h.submit(mailbox, sender)
	h.waitStatus("Graph's outage", func(st Status) bool { return !st.Upstream.Up })
	h.engine.CredentialAccepted()
	h.settle()
	if st := h.engine.Status(); st.Upstream.Up {
		t.Error("a token issued ended an outage Graph's refusal started")
	}
}
