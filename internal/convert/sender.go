package convert

import (
	"bufio"
	"io"
	"net/mail"
	"strings"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// senderFields name who sent a message. Every address in every one of them
// must be one the identity may send as, or recipients would see a sender
// the gateway never checked.
var senderFields = []string{"From", "Sender", "Resent-From", "Resent-Sender"}

// ForeignSenders reads a message's top-level header from r and returns
// what its sender fields name that allowed does not cover: each foreign
// address, and each field that names no address at all. The SMTP server
// refuses such a message for identities with header_from = "reject".
func ForeignSenders(r io.Reader, allowed []string) ([]string, error) {
	h, _, err := readHeader(bufio.NewReader(r))
	if err != nil {
		return nil, err
	}
	return foreignSenders(h, allowed), nil
}

func foreignSenders(h textproto.Header, allowed []string) []string {
	var foreign []string
	for _, key := range senderFields {
		fields := h.FieldsByKey(key)
		for fields.Next() {
			list := fieldAddresses(key, fields.Value())
			if len(list) == 0 && strings.TrimSpace(fields.Value()) != "" {
				foreign = append(foreign, fields.Value())
			}
			for _, a := range list {
				if !envelope.SenderAllowed(allowed, a.Address) {
					foreign = append(foreign, a.Address)
				}
			}
		}
	}
	return foreign
}

// fieldAddresses parses one field's value, however many fields of that
// name the header has.
func fieldAddresses(key, value string) []*mail.Address {
	var one textproto.Header
	one.Add(key, value)
	return addressList(mailHeader(one), key)
}

// allFrom lists the addresses of every From field.
func allFrom(h textproto.Header) []*mail.Address {
	var list []*mail.Address
	fields := h.FieldsByKey("From")
	for fields.Next() {
		list = append(list, fieldAddresses("From", fields.Value())...)
	}
	return list
}

// headerFrom decides the one From a message for env leaves with: the
// header's own when it is a single address the identity may send as, else
// the mailbox, named as the original only when that name holds no address
// (a name like "ceo@example.org" would mislead as much as the address).
// kept reports that the header's From stays as it is; keepSenders, that
// Sender and Resent-* may stay: only when every address in them is
// allowed as well.
func headerFrom(h textproto.Header, env *envelope.Envelope) (from *mail.Address, kept, keepSenders bool) {
	keepSenders = len(foreignSenders(h, env.AllowedSenders)) == 0
	list := allFrom(h)
	if len(list) == 1 && envelope.SenderAllowed(env.AllowedSenders, list[0].Address) {
		return list[0], len(h.Values("From")) == 1, keepSenders
	}
	from = &mail.Address{Address: env.Mailbox}
	if len(list) > 0 && !strings.Contains(list[0].Name, "@") {
		from.Name = list[0].Name
	}
	return from, false, keepSenders
}

// applySenderPolicy rewrites a header that leaves as MIME: one From as
// headerFrom decides, no Sender or Resent-* fields unless all are allowed,
// and no Exchange header.
func applySenderPolicy(h *gomail.Header, env *envelope.Envelope) {
	from, kept, keepSenders := headerFrom(h.Header.Header, env)
	if !kept {
		h.SetAddressList("From", []*mail.Address{from})
	}
	fields := h.Fields()
	for fields.Next() {
		key := strings.ToLower(fields.Key())
		if isExchangeHeader(key) || !keepSenders && (key == "sender" || strings.HasPrefix(key, "resent-")) {
			fields.Del()
		}
	}
}

// isExchangeHeader reports the X-MS-* fields (X-MS-Exchange-Organization-*
// among them) that Exchange Online trusts to say, for example, that a
// message was sent inside the organization. A client must never set them.
func isExchangeHeader(name string) bool {
	return strings.HasPrefix(strings.ToLower(name), "x-ms-")
}
