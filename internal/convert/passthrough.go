package convert

import (
	"bytes"
	"io"
	"net/mail"
	"strings"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// passthrough opens the message as Graph's MIME sendMail must get a signed
// or encrypted message: body bytes untouched, the top-level header adjusted
// to the envelope. A signature covers only the body, so this is safe:
//   - To and Cc keep only envelope recipients (the envelope decides);
//   - Bcc lists the envelope recipients not in To or Cc (Graph sends to the
//     header's recipients only);
//   - From becomes the mailbox when the identity may not send as it.
//
// h is the message header as read; body opens the bytes after it.
func passthrough(h textproto.Header, body Opener, env *envelope.Envelope) Opener {
	return func() (io.ReadCloser, error) {
		mh := mailHeader(h.Copy())
		rewriteForEnvelope(&mh, env)
		var head bytes.Buffer
		if err := textproto.WriteHeader(&head, mh.Header.Header); err != nil {
			return nil, err
		}
		rc, err := body()
		if err != nil {
			return nil, err
		}
		return readCloser{io.MultiReader(&head, rc), rc}, nil
	}
}

func rewriteForEnvelope(h *gomail.Header, env *envelope.Envelope) {
	if from := addressList(*h, "From"); len(from) == 0 || !envelope.SenderAllowed(env.AllowedSenders, from[0].Address) {
		name := ""
		if len(from) > 0 {
			name = from[0].Name
		}
		h.SetAddressList("From", []*mail.Address{{Name: name, Address: env.Mailbox}})
	}
	listed := map[string]bool{}
	for _, key := range []string{"To", "Cc"} {
		if !h.Has(key) {
			continue
		}
		var keep []*mail.Address
		for _, a := range addressList(*h, key) {
			if env.IsRecipient(a.Address) && !listed[strings.ToLower(a.Address)] {
				listed[strings.ToLower(a.Address)] = true
				keep = append(keep, a)
			}
		}
		h.SetAddressList(key, keep)
	}
	var bcc []*mail.Address
	for _, r := range env.Recipients {
		if !listed[strings.ToLower(r)] {
			listed[strings.ToLower(r)] = true
			bcc = append(bcc, &mail.Address{Address: r})
		}
	}
	h.SetAddressList("Bcc", bcc)
}
