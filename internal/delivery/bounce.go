package delivery

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/safetext"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// explain gives the sender the words upstream found for a refusal.
func explain(ue *upstream.Error) string {
	if ue.Explanation != "" {
		return ue.Explanation
	}
	return "Microsoft 365 refused the message."
}

// sendBounce queues a non-delivery report for a failed message: from its
// mailbox to its envelope sender, with a null sender of its own so that
// it can never bounce in turn. Null senders and automatic messages (other
// reports, auto-replies) get none.
func (e *Engine) sendBounce(env *envelope.Envelope, f failure) {
	if env.MailFrom == "" {
		return
	}
	d, err := e.spool.Show(env.ID)
	if err != nil {
		e.log.Error("cannot read failed message for its bounce", "id", env.ID, "error", err)
		return
	}
	header, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(d.Header))).ReadMIMEHeader()
	if isAutomatic(header) {
		return
	}
	report := &envelope.Envelope{
		Identity:       "bounce",
		Mailbox:        env.Mailbox,
		AllowedSenders: []string{env.Mailbox},
		Recipients:     []string{env.MailFrom},
		Received:       e.clock.Now(),
	}
	in, err := e.spool.Create(report)
	if err != nil {
		e.log.Error("cannot queue bounce", "id", env.ID, "error", err)
		return
	}
	if err := e.writeReport(in, in.ID(), env, header, d.Header, f); err != nil {
		in.Abort()
		e.log.Error("cannot queue bounce", "id", env.ID, "error", err)
		return
	}
	bounceID, err := in.Commit()
	if err != nil {
		e.log.Error("cannot queue bounce", "id", env.ID, "error", err)
		return
	}
	e.log.Info("bounced", "id", env.ID, "bounce_id", bounceID, "to", "<"+safetext.Log(env.MailFrom)+">")
	e.traceBounce(env, report, bounceID)
}

// bounceRefused reports the recipients Exchange refused for good while it
// took the message for the others: they alone are named in the bounce,
// queued while the message is still in the spool.
func (e *Engine) bounceRefused(env *envelope.Envelope, refused []upstream.RecipientFailure) {
	partial := *env
	partial.Recipients = nil
	var replies []string
	for _, r := range refused {
		partial.Recipients = append(partial.Recipients, r.Recipient)
		replies = append(replies, r.Recipient+": "+r.Reply)
	}
	reason := "recipients refused: " + strings.Join(replies, "; ")
	e.log.Warn("recipients refused", "id", env.ID, "mailbox", env.Mailbox, "reason", reason)
	if e.bounce {
		e.sendBounce(&partial, failure{
			reason: reason,
			plain:  "Microsoft 365 refused these recipients; the others received the message.",
			status: refused[0].Status,
		})
	}
}

// isAutomatic reports whether a message is itself a report or another
// automatic message (RFC 3834), which must never be answered.
func isAutomatic(h textproto.MIMEHeader) bool {
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt == "multipart/report" {
		return true
	}
	auto, _, _ := strings.Cut(h.Get("Auto-Submitted"), ";")
	auto, _, _ = strings.Cut(auto, "(") // a comment
	auto = strings.ToLower(strings.TrimSpace(auto))
	return auto != "" && auto != "no"
}

// writeReport writes a delivery status notification (RFC 3464) for the
// message env: a human part, the machine-readable status, and the
// original headers.
func (e *Engine) writeReport(w io.Writer, id string, env *envelope.Envelope, header textproto.MIMEHeader, rawHeader []byte, f failure) error {
	now := e.clock.Now()
	bw := bufio.NewWriter(w)
	mw := multipart.NewWriter(bw)

	fmt.Fprintf(bw, "From: Mail Delivery System <%s>\r\n", env.Mailbox)
	fmt.Fprintf(bw, "To: <%s>\r\n", env.MailFrom)
	subject := "Undeliverable"
	if s := oneLine(header.Get("Subject")); s != "" && len(s) < 400 {
		subject += ": " + s
	}
	fmt.Fprintf(bw, "Subject: %s\r\n", subject)
	fmt.Fprintf(bw, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(bw, "Message-ID: <%s@%s>\r\n", id, e.hostname)
	if msgID := oneLine(header.Get("Message-Id")); msgID != "" {
		fmt.Fprintf(bw, "In-Reply-To: %s\r\nReferences: %s\r\n", msgID, msgID)
	}
	fmt.Fprintf(bw, "Auto-Submitted: auto-replied\r\n")
	fmt.Fprintf(bw, "MIME-Version: 1.0\r\n")
	fmt.Fprintf(bw, "Content-Type: multipart/report; report-type=delivery-status; boundary=%q\r\n\r\n", mw.Boundary())

	part, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"8bit"},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(part, "This is the mail gateway at %s.\r\n\r\n", e.hostname)
	fmt.Fprintf(part, "Your message could not be delivered to these recipients:\r\n\r\n")
	for _, rcpt := range env.Recipients {
		fmt.Fprintf(part, "    %s\r\n", rcpt)
	}
	fmt.Fprintf(part, "\r\n%s\r\n\r\n", f.plain)
	fmt.Fprintf(part, "Technical detail: %s\r\n\r\n", oneLine(f.reason))
	fmt.Fprintf(part, "The headers of your message are attached.\r\n")

	part, err = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"message/delivery-status"}})
	if err != nil {
		return err
	}
	fmt.Fprintf(part, "Reporting-MTA: dns; %s\r\n", e.hostname)
	fmt.Fprintf(part, "Arrival-Date: %s\r\n", env.Received.Format(time.RFC1123Z))
	status := f.status
	if status == "" {
		status = "5.0.0"
	}
	for _, rcpt := range env.Recipients {
		fmt.Fprintf(part, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n", rcpt, status)
	}

	part, err = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/rfc822-headers"}})
	if err != nil {
		return err
	}
	part.Write(rawHeader)
	if err := mw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// oneLine makes text safe for a single header or report line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
