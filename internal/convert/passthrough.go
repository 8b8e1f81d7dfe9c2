package convert

import (
	"bufio"
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
//   - the sender policy applies (applySenderPolicy): one allowed From, no
//     foreign Sender or Resent-*, no X-MS-* header.
func passthrough(open Opener, env *envelope.Envelope) Opener {
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		h, body, err := readHeader(bufio.NewReader(rc))
		if err != nil {
			rc.Close()
			return nil, err
		}
		mh := mailHeader(h)
		rewriteForEnvelope(&mh, env)
		var head bytes.Buffer
		if err := textproto.WriteHeader(&head, mh.Header.Header); err != nil {
			rc.Close()
			return nil, err
		}
		return readCloser{io.MultiReader(&head, body), rc}, nil
	}
}

func rewriteForEnvelope(h *gomail.Header, env *envelope.Envelope) {
	applySenderPolicy(h, env)
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
