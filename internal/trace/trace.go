// Package trace keeps the message trace: one event per line for every step
// of every message (accepted, each attempt's outcome, delivered, failed,
// bounced), in one file a day under the spool, so that "where did my scan
// go?" has an answer after the message has left the spool.
//
// Layout under the trace folder (spool/trace):
//
//	YYYY-MM-DD.jsonl   the events of one UTC day, one JSON object a line
//
// Files are appended through a buffer and are not fsynced per event: a
// crash may lose the last second of trace, never mail. Files older than the
// retention are deleted by the writer.
package trace

import (
	"encoding/json"
	"time"
)

// Event kinds, in a message's life.
const (
	Accepted  = "accepted"  // the client got 250; the message is spooled
	Deferred  = "deferred"  // an attempt failed for now; it will be retried
	Held      = "held"      // the upstream refused the credential; it waits without spending attempts
	Delivered = "delivered" // the upstream took the message; it left the spool
	Failed    = "failed"    // it became a dead letter
	Bounced   = "bounced"   // a bounce to its sender was queued (Reference: the bounce's queue ID)
)

// Event is one step of one message. Fields are kept short on disk: a site
// sending 100,000 messages a day keeps 30 days of them.
type Event struct {
	ID   string    `json:"id"` // queue ID
	Time time.Time `json:"-"`
	Kind string    `json:"ev"`

	// Set on Accepted only.
	Client    string   `json:"c,omitempty"`   // client IP and port
	Identity  string   `json:"u,omitempty"`   // user:NAME or network:CIDR
	Mailbox   string   `json:"mb,omitempty"`  // the mailbox it is sent as
	From      string   `json:"f,omitempty"`   // envelope sender; empty for <>
	To        []string `json:"to,omitempty"`  // envelope recipients, all of them
	Size      int64    `json:"sz,omitempty"`  // bytes
	MessageID string   `json:"mid,omitempty"` // the Message-ID header
	Subject   string   `json:"s,omitempty"`   // only with [log] subjects = true

	// Set on outcomes.
	Attempts  int    `json:"n,omitempty"`   // attempts made so far
	Reference string `json:"ref,omitempty"` // the upstream's reference: Graph's request-id, an SMTP reply
	Reason    string `json:"why,omitempty"` // why it was deferred, held or failed
}

// wire is Event as written: the time as Unix milliseconds, right after the
// ID, so that a search finds both without decoding the line.
type wire struct {
	ID string `json:"id"`
	T  int64  `json:"t"`
	*Event
}

// maxReason bounds the reason kept per event: error texts can be long and
// the trace is kept for weeks.
const maxReason = 512

// marshal encodes e as one line, newline included.
func marshal(e Event) ([]byte, error) {
	if len(e.Reason) > maxReason {
		e.Reason = e.Reason[:maxReason]
	}
	b, err := json.Marshal(wire{ID: e.ID, T: e.Time.UnixMilli(), Event: &e})
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// unmarshal decodes one line written by marshal.
func unmarshal(line []byte) (Event, error) {
	var w wire
	w.Event = new(Event)
	if err := json.Unmarshal(line, &w); err != nil {
		return Event{}, err
	}
	e := *w.Event
	e.ID = w.ID
	e.Time = time.UnixMilli(w.T)
	return e, nil
}

// fileName is the name of the file holding the events of day t (UTC).
func fileName(t time.Time) string {
	return t.UTC().Format(dayLayout) + fileExt
}

const (
	dayLayout = "2006-01-02"
	fileExt   = ".jsonl"
)
