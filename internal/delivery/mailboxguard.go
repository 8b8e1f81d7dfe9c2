package delivery

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/trace"
	"github.com/smtpgw/smtpgw/internal/window"
)

// Exchange Online blocks a mailbox from sending for up to a day once it has
// sent to more than 10,000 recipients in 24 hours.
const (
	mailboxRecipientsPerDay = 10000
	mailboxRecipientWindow  = 24 * time.Hour
)

// identityRecipientsPerDay is the share of a mailbox's day that one
// identity may use. The rest is kept for the other identities that send as
// the same mailbox (printers of one network, applications sharing a
// noreply mailbox), so that no single one of them, hostile or broken, can
// hold everyone's mail for a day: it holds its own. 2,000 recipients stay
// for the others, some 400 scans of five recipients a day.
const identityRecipientsPerDay = mailboxRecipientsPerDay - 2000

// mailboxGuard keeps each mailbox under Exchange's daily recipient limit,
// and each identity within its share of it: a message that would cross
// either is held in the queue until enough of the day's sends have aged
// out, rather than sent and the mailbox blocked. It counts what this
// gateway sent since it started, and what its sends in flight may add.
type mailboxGuard struct {
	mu         sync.Mutex      // makes reserve's check and count one step
	sent       *window.Counter // recipients, by lower-case mailbox
	byIdentity *window.Counter // recipients, by lower-case mailbox and identity
	inFlight   map[string]int  // recipients of the sends in flight, by the same keys
}

// guardHold is why the guard holds a message: the identity whose share
// it counts in, and the reason in words. The message's next attempt says
// until when, its lane which mailbox.
type guardHold struct {
	identity string
	reason   string // for the log and `queue show`
}

func newMailboxGuard() *mailboxGuard {
	return &mailboxGuard{sent: window.New(), byIdentity: window.New(), inFlight: map[string]int{}}
}

// reserve returns an empty reason, and counts the message as in flight,
// if a message from identity to n recipients may be sent as mailbox now;
// else until when it waits, and why. Settle each reservation once.
func (g *mailboxGuard) reserve(mailbox, identity string, n int, now time.Time) (until time.Time, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	key := strings.ToLower(mailbox)
	idKey := identityKey(key, identity)
	own := g.byIdentity.RoomAt(idKey, now, mailboxRecipientWindow, n+g.inFlight[idKey], identityRecipientsPerDay)
	all := g.sent.RoomAt(key, now, mailboxRecipientWindow, n+g.inFlight[key], mailboxRecipientsPerDay)
	switch {
	case own.After(now) && !all.After(own):
		return own, fmt.Sprintf("mailbox guard: identity %s would pass its share (%d) of mailbox %s's %d recipients a day",
			identity, identityRecipientsPerDay, mailbox, mailboxRecipientsPerDay)
	case all.After(now):
		return all, fmt.Sprintf("mailbox guard: mailbox %s would pass Exchange's %d recipients a day and be blocked",
			mailbox, mailboxRecipientsPerDay)
	}
	g.inFlight[key] += n
	g.inFlight[idKey] += n
	return time.Time{}, ""
}

// settle ends a reservation of reserved recipients, of whom sent received
// the message at at: all of them when it was delivered, none when it was
// not, some when a way out that takes them in several transactions failed
// part way.
func (g *mailboxGuard) settle(mailbox, identity string, reserved, sent int, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	key := strings.ToLower(mailbox)
	idKey := identityKey(key, identity)
	for _, k := range []string{key, idKey} {
		if g.inFlight[k] -= reserved; g.inFlight[k] <= 0 {
			delete(g.inFlight, k)
		}
	}
	if sent > 0 {
		g.sent.Add(key, at, mailboxRecipientWindow, sent)
		g.byIdentity.Add(idKey, at, mailboxRecipientWindow, sent)
	}
}

func identityKey(mailbox, identity string) string {
	return mailbox + "\x00" + identity
}

// guardHeld holds a message for the guard without spending an attempt. Its
// next attempt and the reason are recorded in its state, so that `queue
// show` tells the admin why it waits and until when, and a restart, which
// forgets what was sent, does not send it early.
//
// A message still held when its maximum age passes fails then, as any
// message that waited too long.
func (e *Engine) guardHeld(entry *queue.Entry, until time.Time, reason string) result {
	id := entry.Envelope.ID
	expires := ageStart(entry).Add(e.maxAge)
	if !e.clock.Now().Before(expires) {
		e.giveUp(entry, entry.State.Attempts, errors.New(reason))
		return result{id: id, finished: true}
	}
	until = minTime(until, expires)
	st := entry.State
	st.NextAttempt, st.Held = until, reason
	if err := entry.SaveState(st); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return result{id: id, finished: true}
		}
		e.log.Error("cannot record the mailbox guard's hold", "id", id, "error", err)
	}
	e.log.Warn("held by the mailbox guard", "id", id, "mailbox", entry.Envelope.Mailbox, "identity", entry.Envelope.Identity,
		"recipients", len(entry.Envelope.Recipients), "until", until, "reason", reason)
	e.traceOutcome(trace.Held, id, entry.State.Attempts, "", nil, reason)
	return result{id: id, next: until, guarded: &guardHold{identity: entry.Envelope.Identity, reason: reason}}
}
