package delivery

import (
	"errors"
	"time"

	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// hold is a refusal of the gateway's credential, by the whole target (an
// outage) or for one mailbox (a held lane). Its messages wait with their
// attempts unspent; one of them is sent per probe interval to see whether
// an admin fixed the cause, the interval doubling up to the maximum. They
// fail only when their maximum age passes, as in any outage.
//
// A probe is a real send of the oldest held message, not a token request:
// Entra ID issues tokens whatever an application access policy says, so
// only a send can show that Graph lets the app use a mailbox again; and a
// probe that succeeds has delivered mail rather than spent a request.
type hold struct {
	cause     *upstream.Error // the latest refusal
	since     time.Time
	interval  time.Duration // until the next probe
	nextProbe time.Time
	probing   bool // a probe is in flight
}

func (e *Engine) newHold(cause *upstream.Error, now time.Time) *hold {
	return &hold{cause: cause, since: now, interval: e.minProbe, nextProbe: now.Add(e.minProbe)}
}

// refusedAgain records a probe's failure and doubles the interval.
func (h *hold) refusedAgain(cause *upstream.Error, now time.Time, maxInterval time.Duration) {
	h.cause = cause
	h.interval = min(2*h.interval, maxInterval)
	h.nextProbe = now.Add(h.interval)
}

// mayProbe reports whether a probe for h may start now.
func (e *Engine) mayProbe(h *hold, now time.Time) bool {
	return !h.probing && !now.Before(h.nextProbe) && e.inFlight < e.workers
}

// refuse applies a refusal of the credential: an attempt's on lane l, or
// (l nil, only for ScopeTarget) one told by CredentialRefused. probe is
// the hold the attempt probed for, if any.
func (e *Engine) refuse(l *lane, cause *upstream.Error, probe *hold, now time.Time) {
	if cause.Scope == upstream.ScopeMailbox {
		// Graph answered for this mailbox: the target's credential works.
		e.endOutage(now)
		switch {
		case l.held == nil:
			l.held = e.newHold(cause, now)
			e.log.Error("mailbox held: Graph refuses the gateway this mailbox; its messages wait, others keep flowing",
				"mailbox", l.key, "messages", l.items, "next_probe", l.held.nextProbe, "error", cause)
		case probe == l.held:
			l.held.refusedAgain(cause, now, e.maxProbe)
			e.log.Info("mailbox still held", "mailbox", l.key, "next_probe", l.held.nextProbe, "error", cause)
		}
		return
	}
	switch {
	case e.outage == nil:
		e.outage = e.newHold(cause, now)
		e.log.Error("upstream down: Entra ID or Graph refuses the gateway's credential; every message waits in the queue, mail is still accepted",
			"queued", len(e.items), "next_probe", e.outage.nextProbe, "error", cause)
	case probe == e.outage:
		e.outage.refusedAgain(cause, now, e.maxProbe)
		e.log.Info("upstream still down", "next_probe", e.outage.nextProbe, "error", cause)
	}
}

// accepted ends the holds an attempt on lane l proved over.
func (e *Engine) accepted(l *lane, now time.Time) {
	e.endOutage(now)
	if l.held != nil {
		e.log.Error("mailbox released: Graph accepts the gateway for it again", "mailbox", l.key,
			"held_for_seconds", now.Sub(l.held.since).Round(time.Second).Seconds(), "messages", l.items)
		l.held = nil
	}
}

func (e *Engine) endOutage(now time.Time) {
	if e.outage == nil {
		return
	}
	e.log.Error("upstream up: the credential is accepted again; delivering the queue",
		"down_for_seconds", now.Sub(e.outage.since).Round(time.Second).Seconds(), "queued", len(e.items))
	e.outage = nil
}

// held reports whether l's messages wait for a hold to end.
func (e *Engine) held(l *lane) bool { return e.outage != nil || l.held != nil }

// expireHeld fails the held messages whose maximum age has passed.
func (e *Engine) expireHeld(now time.Time) {
	for _, it := range e.items {
		if it.inFlight || !e.held(it.lane) || now.Before(it.expires) {
			continue
		}
		cause := e.outage
		if cause == nil {
			cause = it.lane.held
		}
		entry, err := e.spool.Get(it.id)
		if err != nil && !errors.Is(err, queue.ErrNotFound) {
			e.log.Error("cannot load message", "id", it.id, "error", err)
			continue
		}
		if err == nil {
			e.giveUp(entry, entry.State.Attempts, cause.cause)
		}
		e.forget(it)
	}
}
