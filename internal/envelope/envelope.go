// Package envelope holds what the SMTP transaction decided about a message:
// who submitted it, which mailbox sends it, and who receives it. The
// envelope, not the message headers, is the truth for recipients.
package envelope

import (
	"strings"
	"time"
)

// Envelope travels with the raw message from SMTP intake, through the spool,
// to conversion and delivery.
type Envelope struct {
	// ID is the queue ID, assigned by the spool when reception starts.
	ID string `json:"id"`
	// Identity names who submitted the message: "user:NAME" for an SMTP AUTH
	// account or "network:CIDR" for an allowlisted client network.
	Identity string `json:"identity"`
	// Mailbox is the Graph user the message is sent as (/users/{Mailbox}).
	Mailbox string `json:"mailbox"`
	// AllowedSenders are the identity's sender patterns at acceptance time;
	// conversion uses them to decide whether the header From may be kept.
	AllowedSenders []string `json:"allowed_senders"`
	// MailFrom is the SMTP reverse path; empty for a null sender (<>).
	MailFrom string `json:"mail_from"`
	// Recipients are the SMTP forward paths, in the order given.
	Recipients []string `json:"recipients"`
	// ClientAddr is the submitting client's IP address and port.
	ClientAddr string `json:"client_addr"`
	// Received is when the message was accepted.
	Received time.Time `json:"received"`
}

// SenderAllowed reports whether addr matches one of patterns. A pattern is an
// exact address or "*@domain"; both compare case-insensitively.
func SenderAllowed(patterns []string, addr string) bool {
	addr = strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return false
	}
	domain := addr[at+1:]
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == addr {
			return true
		}
		if rest, ok := strings.CutPrefix(p, "*@"); ok && rest == domain {
			return true
		}
	}
	return false
}

// IsRecipient reports whether addr is one of the envelope recipients,
// compared case-insensitively.
func (e *Envelope) IsRecipient(addr string) bool {
	for _, r := range e.Recipients {
		if strings.EqualFold(r, addr) {
			return true
		}
	}
	return false
}
