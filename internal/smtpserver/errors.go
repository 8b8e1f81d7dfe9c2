package smtpserver

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/clients"
)

// Internal reasons for refusing a command, connection or message. Session
// code returns these (wrapped with details for the log); replyFor turns them
// into what the client sees. Their text goes to the log only.
var (
	errNoIdentity          = errors.New("no identity: not authenticated and address in no allowed network")
	errSenderNotAllowed    = errors.New("sender not allowed for this identity")
	errNullSender          = errors.New("null sender refused")
	errBadRecipient        = errors.New("bad recipient address")
	errBadSender           = errors.New("bad sender address")
	errRecipientNotAllowed = errors.New("recipient not allowed for this identity")
	errHeaderSender        = errors.New("header sender not allowed for this identity")
	errEmptyMessage        = errors.New("empty message")
	errHeaderTooLarge      = errors.New("message header over its size or field limit")
	errRateLimited         = errors.New("identity over its sending rate")
	errAuthAbandoned       = errors.New("exchange abandoned by the client")
	errAuthNeedsTLS        = errors.New("AUTH attempted without TLS")
	errAuthUnavailable     = errors.New("AUTH attempted but no accounts are configured")
	errUnknownMechanism    = errors.New("unsupported authentication mechanism")
	errSpool               = errors.New("spool failure")
	errNoRoom              = errors.New("spool below min_free_space")
	errClientData          = errors.New("reading the message from the client failed")
	errShuttingDown        = errors.New("server shutting down")
	errTooManyErrors       = errors.New("too many errors on this connection")
)

// reply is how one internal reason reaches the client. The SMTP code decides
// whether the client may retry: 4xx is temporary, 5xx is permanent.
type reply struct {
	err    error
	smtp   *smtp.SMTPError
	reason string // metrics label
}

// replies is the one place that decides every code this package sends.
//
// go-smtp answers a few refusals itself, before the session sees them, with
// codes that already fit: SIZE parameter above the limit (552 5.3.4), BDAT
// chunk above the limit (552 5.3.4), more than max_recipients RCPT
// (452 4.5.3), an address it cannot parse at all (501 5.5.2), and commands
// out of sequence (502/503 5.5.1).
var replies = []reply{
	// Policy: permanent, retrying cannot help.
	{errNoIdentity, &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}, "no_identity"},
	{errSenderNotAllowed, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not allowed for this client"}, "sender"},
	{errNullSender, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not allowed for this client"}, "sender"},
	{errBadRecipient, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}, "recipient"},
	{errBadSender, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad sender address syntax"}, "sender"},
	{errRecipientNotAllowed, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Recipient address not allowed for this client"}, "recipient"},
	{errHeaderSender, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "From, Sender or Resent header not allowed for this client"}, "header_sender"},
	{errEmptyMessage, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Empty message"}, "empty"},
	{smtp.ErrDataTooLarge, &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds fixed maximum message size"}, "size"},
	// Postfix's header_size_limit; a header this large is never mail.
	{errHeaderTooLarge, &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message header exceeds fixed maximum size"}, "header_size"},
	// Lines of any length are read in DATA and BDAT; this is the safety net
	// should that ever fail. A message's form is never a reason to retry.
	{smtp.ErrTooLongLine, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Line too long"}, "line_length"},

	// Authentication (RFC 4954 section 6).
	// 421 closes the connection, so a guesser must reconnect for each batch.
	// First: it wraps the failure that reached the limit.
	{clients.ErrTooManyFailures, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures, closing connection"}, "auth_limit"},
	{clients.ErrBadCredentials, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}, "auth"},
	{clients.ErrMalformed, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed authentication response"}, "auth"},
	{errAuthAbandoned, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed authentication response"}, "auth"},
	// 538 5.7.11 is RFC 4954's reply for a mechanism that needs encryption.
	// go-smtp's own refusal (523 5.7.10) uses a reply code outside RFC 5321,
	// so the session makes this decision instead of go-smtp.
	// 454 is temporary: the client may log in once the window has passed.
	{clients.ErrThrottled, &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins, try later"}, "auth_throttled"},
	{errAuthNeedsTLS, &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}, "auth_tls"},
	{errAuthUnavailable, &smtp.SMTPError{Code: 502, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Authentication not available"}, "auth"},
	{errUnknownMechanism, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Unrecognized authentication type"}, "auth"},

	// Local trouble: temporary, the client should try again later.
	{errSpool, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}, "spool"},
	{errNoRoom, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}, "disk"},
	{errRateLimited, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Sending rate limit reached, try again later"}, "rate"},
	{errClientData, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message transfer interrupted, try again"}, "transfer"},
	{errShuttingDown, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}, "shutdown"},
	{clients.ErrTooManyConnections, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections, try again later"}, "connections"},
	{clients.ErrAddressConnections, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections from your address, try again later"}, "address_connections"},
	{clients.ErrAddressRate, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections from your address, try again later"}, "address_rate"},
	{errTooManyErrors, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors, closing connection"}, "errors"},
}

// errInternal is the reply to anything not listed above: temporary, because
// an unexpected failure is ours, not the client's.
var errInternal = reply{nil, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in processing, try again later"}, "internal"}

// replyFor maps an internal error to the reply the client gets. It never
// passes internal error text through.
func replyFor(err error) reply {
	for _, r := range replies {
		if errors.Is(err, r.err) {
			return r
		}
	}
	return errInternal
}

// replyLine is r as a raw response line, for connections refused before
// go-smtp sees them.
func replyLine(r *smtp.SMTPError) string {
	e := r.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", r.Code, e[0], e[1], e[2], r.Message)
}
