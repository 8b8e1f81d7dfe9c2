package smtpserver

import (
	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// What an identity may send is SMTP's business: the gate says who the
// client is, these functions apply its sending policy.

// recipientAllowed applies allowed_recipients (any recipient when empty),
// with the same patterns as allowed_senders.
func recipientAllowed(id *clients.Identity, addr string) bool {
	return len(id.Policy.AllowedRecipients) == 0 || envelope.SenderAllowed(id.Policy.AllowedRecipients, addr)
}

// mailboxFor is the Graph mailbox a message from id is sent as.
func mailboxFor(id *clients.Identity, mailFrom string) string {
	if id.Mailbox != "" {
		return id.Mailbox
	}
	return mailFrom
}
