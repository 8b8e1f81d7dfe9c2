package smtpserver

import (
	"bufio"
	"bytes"
	"mime"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/safetext"
	"github.com/smtpgw/smtpgw/internal/trace"
)

// SetTrace has accepted messages recorded in w from now on.
func (s *Server) SetTrace(w *trace.Writer) { s.trace.Store(w) }

// maxLoggedRecipients is how many recipients the accepted line names; the
// count follows them.
const maxLoggedRecipients = 20

// recordAccepted writes the accepted log line, Postfix-style so that
// grepping an address finds the queue ID, and the message's first trace
// event. header is the message's header as received.
func (s *session) recordAccepted(id string, env *envelope.Envelope, size int64, header []byte) {
	messageID, subject := headerFields(header)
	if !s.srv.cfg.Log.Subjects {
		subject = ""
	}
	attrs := []any{"id", id, "identity", env.Identity, "mailbox", env.Mailbox, "size", size,
		"from", "<" + safetext.Log(env.MailFrom) + ">", "to", loggedRecipients(env.Recipients),
		"recipients", len(env.Recipients), "message_id", safetext.Log(messageID)}
	if subject != "" {
		attrs = append(attrs, "subject", safetext.Log(subject))
	}
	s.log.Info("accepted", attrs...)
	s.srv.trace.Load().Record(trace.Event{ID: id, Time: env.Received, Kind: trace.Accepted, Client: env.ClientAddr,
		Identity: env.Identity, Mailbox: env.Mailbox, From: env.MailFrom, To: env.Recipients, Size: size,
		MessageID: messageID, Subject: subject})
}

// loggedRecipients is the recipients for a log line, each escaped and
// bounded, at most maxLoggedRecipients of them.
func loggedRecipients(rcpts []string) string {
	var b strings.Builder
	for i, r := range rcpts[:min(len(rcpts), maxLoggedRecipients)] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(safetext.Log(r))
	}
	if more := len(rcpts) - maxLoggedRecipients; more > 0 {
		b.WriteString(",…(" + strconv.Itoa(more) + " more)")
	}
	return b.String()
}

// headerFields reads the Message-ID and the decoded Subject of a header;
// a header it cannot read gives what was read before the fault.
func headerFields(header []byte) (messageID, subject string) {
	// A buffer no larger than the header: most are far below bufio's 4 KiB.
	br := bufio.NewReaderSize(bytes.NewReader(header), min(len(header), 4096))
	h, _ := textproto.NewReader(br).ReadMIMEHeader()
	subject = h.Get("Subject")
	if decoded, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = decoded
	}
	return strings.TrimSpace(h.Get("Message-Id")), subject
}
