package delivery

import (
	"strings"
	"sync"
	"time"
)

// Exchange Online blocks a mailbox from sending for up to a day once it has
// sent to more than 10,000 recipients in 24 hours.
const (
	mailboxRecipientsPerDay = 10000
	mailboxRecipientWindow  = 24 * time.Hour
)

// mailboxGuard keeps each mailbox under Exchange's daily recipient limit:
// a message that would cross it is held in the queue until enough of the
// day's sends have aged out, rather than sent and the mailbox blocked. It
// counts what this gateway sent since it started.
type mailboxGuard struct {
	mu   sync.Mutex
	sent map[string][]sentBatch // by lower-case mailbox, oldest first
}

type sentBatch struct {
	at         time.Time
	recipients int
}

func newMailboxGuard() *mailboxGuard {
	return &mailboxGuard{sent: map[string][]sentBatch{}}
}

// holdUntil returns when a message to n recipients may be sent as mailbox:
// now, or the time enough of the last day's sends leave the window.
func (g *mailboxGuard) holdUntil(mailbox string, n int, now time.Time) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	batches := g.trimLocked(strings.ToLower(mailbox), now)
	total := 0
	for _, b := range batches {
		total += b.recipients
	}
	if total+n <= mailboxRecipientsPerDay {
		return now
	}
	// Wait until enough of the oldest sends leave the window.
	for _, b := range batches {
		total -= b.recipients
		if total+n <= mailboxRecipientsPerDay {
			return b.at.Add(mailboxRecipientWindow)
		}
	}
	// More recipients than a day allows in one message: Exchange decides.
	return now
}

// record records a message to n recipients sent as mailbox.
func (g *mailboxGuard) record(mailbox string, n int, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	key := strings.ToLower(mailbox)
	g.sent[key] = append(g.trimLocked(key, now), sentBatch{now, n})
}

// trimLocked drops the sends older than the window and returns the rest.
func (g *mailboxGuard) trimLocked(key string, now time.Time) []sentBatch {
	batches := g.sent[key]
	first := 0
	for first < len(batches) && now.Sub(batches[first].at) >= mailboxRecipientWindow {
		first++
	}
	if first == len(batches) {
		delete(g.sent, key)
		return nil
	}
	g.sent[key] = batches[first:]
	return batches[first:]
}
