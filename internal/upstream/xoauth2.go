package upstream

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// XOAUTH2 is the SASL XOAUTH2 initial response for mailbox with an access
// token, before base64: "user=" mailbox ^A "auth=Bearer " token ^A ^A.
func XOAUTH2(mailbox, token string) []byte {
	return []byte("user=" + mailbox + "\x01auth=Bearer " + token + "\x01\x01")
}

// errXOAUTH2Refused ends an exchange whose server sent a challenge after
// the empty response to its error challenge.
var errXOAUTH2Refused = errors.New("xoauth2: the server refused the token")

// xoauth2Client is a SASL client for XOAUTH2 in the two-step form: the
// token goes in its own line after the server's empty challenge, not on the
// AUTH line, which some servers (Dovecot's submission) limit to 1,025
// characters. (The IMAP login puts the first response on the AUTHENTICATE
// line itself when the server offers SASL-IR.) A server that refuses the
// token may first send an error challenge (base64 JSON, as Google and
// Dovecot do); the client answers it with an empty response so that the
// server sends its final refusal. It never answers a challenge with nil:
// go-smtp's Client.Auth reports success when it does.
type xoauth2Client struct {
	response []byte
	step     int
}

// NewXOAUTH2Client returns a SASL client logging in as mailbox with token.
func NewXOAUTH2Client(mailbox, token string) sasl.Client {
	return &xoauth2Client{response: XOAUTH2(mailbox, token)}
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", nil, nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.step {
	case 1:
		return c.response, nil
	case 2:
		// The error challenge: an empty line asks for the final answer.
		return []byte{}, nil
	}
	return nil, errXOAUTH2Refused
}
