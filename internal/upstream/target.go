// Package upstream is the only package that knows Microsoft Graph: it builds
// the Entra ID credential and the Graph client, sends converted messages, and
// classifies every failure, in one place, by what it means for the queue.
package upstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Target sends one message as env.Mailbox. Each target takes the form of
// the message it needs from msg: Graph and the outbox its conversion to
// Graph's model, Exchange's SMTP the bytes as the client wrote them. So
// the engine never converts a message that is sent unchanged, and a
// conversion failure only fails messages that needed converting.
type Target interface {
	Send(ctx context.Context, env *envelope.Envelope, msg Message) (Receipt, error)
	// Way names where the target sends, for /status and the status page.
	Way() Way
}

// Way is a Target's way out and where it leads.
type Way struct {
	// Via is "graph" or "smtp", as [exchange] send_via names them, or
	// "outbox" for trial runs.
	Via string `json:"via"`
	// Address is Graph's root URL, [exchange] smtp_address, or the
	// outbox folder.
	Address string `json:"address"`
}

// String names the way for people: "Exchange SMTP at smtp.office365.com:587".
func (w Way) String() string {
	switch w.Via {
	case config.SendViaGraph:
		return "Microsoft Graph at " + w.Address
	case config.SendViaSMTP:
		return "Exchange SMTP at " + w.Address
	}
	return "the outbox folder " + w.Address
}

// Message is one queued message in the forms a Target may ask for.
type Message interface {
	// Converted is the message in Graph's model; the first call converts.
	// Its error is the conversion's, which the engine judges itself.
	Converted() (*convert.Result, error)
	// Raw is the message as the client sent it, and its size.
	Raw() (io.ReaderAt, int64)
}

// CredentialReloader is a Target whose credential files an admin may fix
// while it runs. ReloadCredential re-reads them; the next Send uses what it
// read. It keeps the credential in use when the files cannot be read.
type CredentialReloader interface {
	ReloadCredential() error
}

// Receipt describes a successful send.
type Receipt struct {
	Status int // HTTP status of the final Graph call (202 for sendMail); 250 for SMTP
	// RequestID is Graph's request-id header, for support cases, or
	// Exchange's final SMTP reply to the message.
	RequestID string
	// Refused are the recipients Exchange's SMTP refused for good while it
	// took the message for the others: they get a bounce.
	Refused []RecipientFailure
	// Delivered, with a failed send, are the recipients that received the
	// message in transactions before the failure: a retry must skip them.
	Delivered []string
}

// Kind says what a failure means for the message and its queue.
type Kind int

const (
	// KindTransient (and the zero Kind, a cause upstream could not place):
	// try the message again later.
	KindTransient Kind = iota + 1
	// KindMessage: this message will never be accepted; dead letter and
	// bounce it.
	KindMessage
	// KindCredential: Entra ID or Graph refuses the gateway itself. Only
	// an admin can fix it, and every message of the Scope would fail
	// alike: hold them, without spending their attempts.
	KindCredential
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindCredential:
		return "credential"
	}
	return "transient"
}

// Scope says how much a failure holds back besides this one message.
type Scope int

const (
	ScopeMessage Scope = iota // only this message
	ScopeMailbox              // every message sent as the same mailbox
	ScopeTarget               // every message
)

func (s Scope) String() string {
	switch s {
	case ScopeMailbox:
		return "mailbox"
	case ScopeTarget:
		return "target"
	}
	return "message"
}

// Error is every failure a Target returns. Message is for logs and dead
// letters, Explanation for admins and senders; neither is ever sent to an
// SMTP client.
type Error struct {
	Kind  Kind
	Scope Scope
	// RetryAfter, when positive, is how long Graph asked us to wait; with
	// ScopeMailbox, the whole mailbox waits.
	RetryAfter time.Duration

	Status          int    // HTTP status; 0 when no response arrived
	Code            string // Graph error code (ErrorSendAsDenied), OAuth error (invalid_client) or SMTP reply code ("535 5.7.3")
	AADSTS          string // Entra ID's error number, e.g. "AADSTS7000215"
	Message         string // Graph's message or Entra ID's description
	RequestID       string // Graph's request-id header
	ClientRequestID string // the client-request-id the request carried
	// Explanation says in plain words what went wrong and what to do.
	Explanation string
	// BounceStatus is the RFC 3463 status of a KindMessage failure for
	// its non-delivery report ("5.7.1"); empty when none fits better
	// than 5.0.0.
	BounceStatus string
	Err          error // underlying cause, if any

	token bool // Entra ID's token endpoint failed, not Graph
	// way is the way out that failed: wayGraph when empty, or waySMTP.
	way string
	// sessionUsable: the SMTP session survived the failure and may carry
	// the next message.
	sessionUsable bool
}

func (e *Error) Error() string {
	way := e.way
	if way == "" {
		way = wayGraph
	}
	s := fmt.Sprintf("%s %s failure", way, e.Kind)
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

// EntraRefused reports whether Entra ID refused the gateway's credential
// (its token endpoint, not Graph or Exchange, said no).
func (e *Error) EntraRefused() bool { return e.token && e.Kind == KindCredential }

// LogValue shows every field support needs, and no empty ones.
func (e *Error) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", e.Kind.String())}
	if e.Kind == KindCredential {
		attrs = append(attrs, slog.String("scope", e.Scope.String()))
	}
	add := func(key, value string) {
		if value != "" {
			attrs = append(attrs, slog.String(key, value))
		}
	}
	if e.Status != 0 {
		attrs = append(attrs, slog.Int("status", e.Status))
	}
	add("code", e.Code)
	add("aadsts", e.AADSTS)
	add("message", e.Error())
	add("request_id", e.RequestID)
	add("client_request_id", e.ClientRequestID)
	add("explanation", e.Explanation)
	return slog.GroupValue(attrs...)
}
