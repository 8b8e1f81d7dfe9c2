package delivery

import (
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/window"
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
	sent *window.Counter // recipients, by lower-case mailbox
}

func newMailboxGuard() *mailboxGuard {
	return &mailboxGuard{sent: window.New()}
}

// holdUntil returns when a message to n recipients may be sent as mailbox:
// now, or the time enough of the last day's sends leave the window.
func (g *mailboxGuard) holdUntil(mailbox string, n int, now time.Time) time.Time {
	return g.sent.RoomAt(strings.ToLower(mailbox), now, mailboxRecipientWindow, n, mailboxRecipientsPerDay)
}

// record records a message to n recipients sent as mailbox.
func (g *mailboxGuard) record(mailbox string, n int, now time.Time) {
	g.sent.Add(strings.ToLower(mailbox), now, mailboxRecipientWindow, n)
}
