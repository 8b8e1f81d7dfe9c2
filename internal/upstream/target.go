// Package upstream is the only package that knows Microsoft Graph: it builds
// the Entra ID credential and the Graph client, sends converted messages, and
// classifies every failure as temporary or permanent, in one place.
package upstream

import (
	"context"
	"fmt"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Target sends one converted message as env.Mailbox.
type Target interface {
	Send(ctx context.Context, env *envelope.Envelope, msg *convert.Result) (Receipt, error)
}

// Receipt describes a successful send.
type Receipt struct {
	Status    int    // HTTP status of the final Graph call (202 for sendMail)
	RequestID string // Graph's request-id header, for support cases
}

// Error is every failure a Target returns. Temporary says whether trying
// again later may succeed; RetryAfter, when positive, is how long Graph asked
// us to wait. Message is for logs and dead letters, never for SMTP clients.
type Error struct {
	Status     int    // HTTP status; 0 when no response arrived
	Code       string // Graph error code, e.g. "ErrorSendAsDenied"
	Message    string
	RequestID  string
	RetryAfter time.Duration
	Temporary  bool
	Err        error // underlying cause, if any
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	s := fmt.Sprintf("graph %s failure", kind)
	if e.Status != 0 {
		s += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil && e.Message == "" {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }
