package clients

import "errors"

// Why the gate refuses a connection or a login. Front ends map each to
// their own words (an SMTP reply, an IMAP NO, a POP3 -ERR); the text here
// goes to the log only.
var (
	// Admission.
	ErrTooManyConnections = errors.New("too many connections")
	ErrAddressConnections = errors.New("too many connections from this address")
	ErrAddressRate        = errors.New("too many new connections from this address")

	// Login.
	ErrBadCredentials  = errors.New("invalid credentials")
	ErrMalformed       = errors.New("malformed credentials")
	ErrThrottled       = errors.New("too many failed logins lately from this address or network, or everywhere")
	ErrTooManyFailures = errors.New("too many failed logins on this connection")
	ErrClosed          = errors.New("connection closed while waiting for the password check")
)
