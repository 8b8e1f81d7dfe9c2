package delivery

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/upstream"
)

// Status is what the engine tells people and monitoring (/status).
type Status struct {
	Upstream UpstreamStatus `json:"upstream"`
	Queue    QueueStatus    `json:"queue"`
	// MailboxGuard lists whose messages the mailbox guard holds.
	MailboxGuard []GuardHold `json:"mailbox_guard,omitempty"`
}

// UpstreamStatus names the way out and says whether it takes the
// gateway's credential.
type UpstreamStatus struct {
	Way upstream.Way `json:"way"`
	Up  bool         `json:"up"`
	// Down says why not, when the whole target refuses the credential.
	Down *Refusal `json:"down,omitempty"`
	// HeldMailboxes are the mailboxes the way out refuses the gateway
	// while others flow.
	HeldMailboxes []HeldMailbox `json:"held_mailboxes,omitempty"`
}

// Refusal is a hold: the refusal that caused it, what to do, and when the
// next probe is due.
type Refusal struct {
	Since           time.Time `json:"since"`
	AADSTS          string    `json:"aadsts,omitempty"`
	Code            string    `json:"code,omitempty"`
	HTTPStatus      int       `json:"http_status,omitempty"`
	Description     string    `json:"description,omitempty"`
	Explanation     string    `json:"explanation,omitempty"`
	RequestID       string    `json:"request_id,omitempty"`
	ClientRequestID string    `json:"client_request_id,omitempty"`
	NextProbe       time.Time `json:"next_probe"`
}

// HeldMailbox is one mailbox's hold.
type HeldMailbox struct {
	Mailbox  string `json:"mailbox"`
	Messages int    `json:"messages"`
	Refusal
}

// QueueStatus counts messages by state.
type QueueStatus struct {
	Queued int `json:"queued"` // waiting for a send or in one
	Held   int `json:"held"`   // waiting for a hold to end
	// Limited are waiting for the mailbox guard: their identity, or their
	// mailbox, would pass its recipients of the day.
	Limited int `json:"limited"`
	Failed  int `json:"failed"` // dead letters
	// OldestAgeSeconds is the age of the oldest queued, held or limited
	// message.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// GuardHold is the messages of one identity and mailbox that the mailbox
// guard holds, and when the first of them may go (or fails, should its
// maximum age pass first).
type GuardHold struct {
	Mailbox  string    `json:"mailbox"`
	Identity string    `json:"identity"`
	Messages int       `json:"messages"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
}

// Status reports the engine's state. It asks the delivery loop, so it
// waits for Run to start; once Run has returned it reports the zero Status.
func (e *Engine) Status() Status {
	reply := make(chan Status, 1)
	select {
	case e.statusQs <- reply:
	case <-e.done:
		return Status{}
	}
	st := <-reply
	// Dead letters are not the loop's: count them on disk.
	if failed, err := e.spool.Failed(); err == nil {
		st.Queue.Failed = len(failed)
	}
	return st
}

// status is Status as the loop sees it.
func (e *Engine) status(now time.Time) Status {
	st := Status{Upstream: UpstreamStatus{Way: e.target.Way(), Up: e.outage == nil}}
	if e.outage != nil {
		r := refusal(e.outage)
		st.Upstream.Down = &r
	}
	var oldest time.Time
	guarded := map[string]*GuardHold{} // by identityKey
	for _, it := range e.items {
		switch g := it.guarded; {
		case e.held(it.lane):
			st.Queue.Held++
		case g != nil && !it.inFlight && it.next.After(now):
			st.Queue.Limited++
			key := identityKey(it.lane.key, g.identity)
			if guarded[key] == nil {
				guarded[key] = &GuardHold{Mailbox: it.lane.key, Identity: g.identity, Until: it.next, Reason: g.reason}
			}
			h := guarded[key]
			h.Messages++
			if it.next.Before(h.Until) {
				h.Until, h.Reason = it.next, g.reason
			}
		default:
			st.Queue.Queued++
		}
		if oldest.IsZero() || it.received.Before(oldest) {
			oldest = it.received
		}
	}
	if !oldest.IsZero() {
		st.Queue.OldestAgeSeconds = now.Sub(oldest).Seconds()
	}
	for _, l := range e.order {
		if l.held != nil {
			st.Upstream.HeldMailboxes = append(st.Upstream.HeldMailboxes, HeldMailbox{Mailbox: l.key, Messages: l.items, Refusal: refusal(l.held)})
		}
	}
	slices.SortFunc(st.Upstream.HeldMailboxes, func(a, b HeldMailbox) int { return strings.Compare(a.Mailbox, b.Mailbox) })
	for _, h := range guarded {
		st.MailboxGuard = append(st.MailboxGuard, *h)
	}
	slices.SortFunc(st.MailboxGuard, func(a, b GuardHold) int {
		return cmp.Or(strings.Compare(a.Mailbox, b.Mailbox), strings.Compare(a.Identity, b.Identity))
	})
	return st
}

func refusal(h *hold) Refusal {
	c := h.cause
	return Refusal{
		Since: h.since, AADSTS: c.AADSTS, Code: c.Code, HTTPStatus: c.Status, Description: c.Message,
		Explanation: c.Explanation, RequestID: c.RequestID, ClientRequestID: c.ClientRequestID, NextProbe: h.nextProbe,
	}
}
