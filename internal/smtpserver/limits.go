package smtpserver

import (
	"time"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/window"
)

// Windows of the per-identity rate limits.
const (
	messageRateWindow   = time.Minute
	recipientRateWindow = 24 * time.Hour
)

// identityRates is what each identity sent lately, for its
// messages_per_minute and recipients_per_day. It belongs to the Server and
// outlives a configuration reload; the limits are read from the identity
// in force at each check.
type identityRates struct {
	messages   *window.Counter
	recipients *window.Counter
}

func newIdentityRates() *identityRates {
	return &identityRates{messages: window.New(), recipients: window.New()}
}

// over reports whether id has reached a per-identity rate limit, with
// extra recipients about to be added.
func (r *identityRates) over(id *clients.Identity, extraRecipients int) bool {
	now := time.Now()
	if n := id.Policy.MessagesPerMinute; n > 0 && r.messages.Count(id.Name, now, messageRateWindow) >= n {
		return true
	}
	n := id.Policy.RecipientsPerDay
	return n > 0 && r.recipients.Count(id.Name, now, recipientRateWindow)+extraRecipients > n
}

// sent records an accepted message against id's rate limits.
func (r *identityRates) sent(id *clients.Identity, recipients int) {
	now := time.Now()
	if id.Policy.MessagesPerMinute > 0 {
		r.messages.Add(id.Name, now, messageRateWindow, 1)
	}
	if id.Policy.RecipientsPerDay > 0 {
		r.recipients.Add(id.Name, now, recipientRateWindow, recipients)
	}
}
