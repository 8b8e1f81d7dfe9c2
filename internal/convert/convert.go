package convert

import (
	"errors"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Convert turns the raw MIME message that open streams into a Graph message
// for env.Mailbox. It does no network and no disk I/O of its own.
func Convert(open Opener, env *envelope.Envelope) (*Result, error) {
	return nil, errors.New("convert: not implemented yet")
}
