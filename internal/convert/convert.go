// Package convert turns a raw MIME message and its SMTP envelope into a
// Microsoft Graph message. It is pure: no network and no disk of its own;
// content is streamed from the Opener it is given.
package convert

import (
	"bufio"
	"fmt"
	"io"
	"net/mail"
	"strings"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// maxXHeaders is how many internetMessageHeaders Graph accepts.
const maxXHeaders = 5

// Convert turns the raw MIME message that open streams into a Graph message
// for env.Mailbox. The envelope decides who receives; the header From is
// kept only when the identity may send as it.
//
// A message that cannot be sent at all gives a *MalformedError; any other
// error comes from open or the stream it returns, and wraps it.
func Convert(open Opener, env *envelope.Envelope) (*Result, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	if _, err := br.Peek(1); err == io.EOF {
		return nil, &MalformedError{"the message is empty"}
	} else if err != nil {
		return nil, fmt.Errorf("reading the message: %w", err)
	}
	h, body, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	header := mailHeader(h)

	res := &Result{}
	m := &res.Message
	m.Subject = decodedText(header, "Subject")
	setAddresses(m, h, header, env)
	m.ReplyTo = recipients(addressList(header, "Reply-To"))
	m.Importance = importance(h)
	if id, err := header.MessageID(); err == nil && id != "" && !strings.ContainsAny(id, " <>") {
		m.InternetMessageID = "<" + id + ">"
	}
	m.InternetMessageHeaders, res.DroppedHeaders = xHeaders(h)

	root := newPart(h, body, nil, "text/plain")
	if isSecured(root.mediaType) {
		res.MIME = passthrough(open, env)
		return res, nil
	}
	w := &walker{open: open}
	t, err := w.walk(root, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the message: %w", err)
	}
	m.Body = ItemBody{ContentType: "text"}
	if t.body != nil {
		m.Body.Content = t.body.content
		if t.body.html {
			m.Body.ContentType = "html"
			m.Body.Content = linkLocations(m.Body.Content, t.attachments)
		}
	}
	keepReferencedInline(m.Body, t.attachments)
	res.Attachments = t.attachments
	return res, nil
}

// MalformedError reports a message that cannot be sent at all; its text is
// a one-line reason fit for a dead letter or a bounce.
type MalformedError struct {
	Reason string
}

func (e *MalformedError) Error() string { return e.Reason }

// isSecured reports signed or encrypted structures, which must reach Graph
// as MIME unchanged or their signature breaks.
func isSecured(mediaType string) bool {
	switch mediaType {
	case "multipart/signed", "multipart/encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime":
		return true
	}
	return false
}

// setAddresses applies the sender policy to From (headerFrom; Graph's JSON
// has no Sender or Resent-* to carry) and the envelope to To and Cc.
func setAddresses(m *Message, raw textproto.Header, h gomail.Header, env *envelope.Envelope) {
	from, _, _ := headerFrom(raw, env)
	m.From = &Recipient{EmailAddress: EmailAddress{Name: from.Name, Address: from.Address}}

	seen := map[string]bool{}
	pick := func(key string) []Recipient {
		var out []Recipient
		for _, a := range addressList(h, key) {
			lower := strings.ToLower(a.Address)
			if seen[lower] || !env.IsRecipient(a.Address) {
				continue
			}
			seen[lower] = true
			out = append(out, Recipient{EmailAddress: EmailAddress{Name: a.Name, Address: a.Address}})
		}
		return out
	}
	m.ToRecipients = pick("To")
	m.CcRecipients = pick("Cc")
	for _, r := range env.Recipients {
		if lower := strings.ToLower(r); !seen[lower] {
			seen[lower] = true
			m.BccRecipients = append(m.BccRecipients, Recipient{EmailAddress: EmailAddress{Address: r}})
		}
	}
}

func recipients(list []*mail.Address) []Recipient {
	var out []Recipient
	for _, a := range list {
		out = append(out, Recipient{EmailAddress: EmailAddress{Name: a.Name, Address: a.Address}})
	}
	return out
}

// importance reads Importance, X-Priority and Priority, in that order.
func importance(h textproto.Header) string {
	switch strings.ToLower(strings.TrimSpace(h.Get("Importance"))) {
	case "high":
		return "high"
	case "low":
		return "low"
	case "normal":
		return "normal"
	}
	if p := strings.TrimSpace(h.Get("X-Priority")); p != "" {
		switch p[0] {
		case '1', '2':
			return "high"
		case '4', '5':
			return "low"
		case '3':
			return "normal"
		}
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Priority"))) {
	case "urgent":
		return "high"
	case "non-urgent":
		return "low"
	}
	return ""
}

// xHeaders keeps the first X- headers Graph accepts and names the rest,
// Exchange's own X-MS-* among them: those are never passed on.
func xHeaders(h textproto.Header) (kept []Header, dropped []string) {
	fields := h.Fields()
	for fields.Next() {
		name := fields.Key()
		if !strings.HasPrefix(strings.ToLower(name), "x-") {
			continue
		}
		if isExchangeHeader(name) {
			dropped = append(dropped, name)
			continue
		}
		value := strings.Join(strings.Fields(headerUTF8(fields.Value())), " ")
		if value == "" {
			continue
		}
		if len(kept) < maxXHeaders {
			kept = append(kept, Header{Name: name, Value: value})
		} else {
			dropped = append(dropped, name)
		}
	}
	return kept, dropped
}

// linkLocations gives parts that HTML refers to by Content-Location a
// Content-ID, and points the HTML at it, since Graph resolves only cid:.
func linkLocations(html string, attachments []Attachment) string {
	for i := range attachments {
		a := &attachments[i]
		if a.location == "" || a.ContentID != "" {
			continue
		}
		replaced := html
		for _, quote := range []string{`"`, `'`} {
			replaced = strings.ReplaceAll(replaced, quote+a.location+quote, quote+"cid:"+contentIDFor(i)+quote)
		}
		if replaced != html {
			html = replaced
			a.ContentID, a.IsInline = contentIDFor(i), true
		}
	}
	return html
}

// keepReferencedInline clears isInline on parts the HTML body does not show:
// Outlook hides inline attachments, so an unreferenced one would be lost.
func keepReferencedInline(body ItemBody, attachments []Attachment) {
	html := ""
	if body.ContentType == "html" {
		html = strings.ToLower(body.Content)
	}
	for i := range attachments {
		a := &attachments[i]
		if a.IsInline && !strings.Contains(html, "cid:"+strings.ToLower(a.ContentID)) {
			a.IsInline = false
		}
	}
}

func contentIDFor(i int) string { return fmt.Sprintf("part%d@smtpgw", i+1) }
