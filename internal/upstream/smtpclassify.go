package upstream

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"
)

// Ways out, as errors name them.
const (
	wayGraph = "graph"
	waySMTP  = "exchange smtp"
)

// Stages of an SMTP session, which decide what a refusal means.
const (
	stageConnect = "connect"
	stageAuth    = "auth"
	stageMail    = "mail"
	stageRcpt    = "rcpt"
	stageData    = "data"
)

// RecipientFailure is one recipient Exchange refused for good while it
// took the message for the others.
type RecipientFailure struct {
	Recipient string
	Reply     string // the server's reply, "550 5.1.10 RESOLVER.ADR.RecipientNotFound …"
	Status    string // RFC 3463 status for the bounce
}

// smtpExplanations are what admins do about Exchange's refusals of the
// gateway, by enhanced status code.
var smtpExplanations = map[string]string{
	"5.7.3": "Exchange Online refused the app's token for this mailbox. Register the app's service principal in Exchange (New-ServicePrincipal -AppId <client_id> -ObjectId <object ID of the Enterprise application, not of the app registration>), " +
		"grant it the mailbox (Add-MailboxPermission -Identity <mailbox> -User <service principal ID> -AccessRights FullAccess, or Add-RecipientPermission … -AccessRights SendAs), " +
		"and give the app the SMTP.SendAsApp permission on Office 365 Exchange Online with admin consent. Check with Test-ServicePrincipalAuthorization; grants take up to half an hour to apply.",
	"5.7.139": "SMTP AUTH is disabled for the tenant or for this mailbox. Enable it for the mailbox with Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false (or for the tenant with Set-TransportConfig -SmtpClientAuthenticationDisabled $false), and check that no Conditional Access or security defaults block it.",
	"5.7.57":  "Exchange Online wants the gateway to authenticate before sending: check smtp_address in [exchange] (smtp.office365.com:587 for the global cloud).",
}

// classifySMTP turns the failure of one stage of an SMTP session into an
// *Error, as classify does for Graph: here and only here.
func classifySMTP(stage string, err error) *Error {
	e := &Error{Err: err, way: waySMTP, Kind: KindTransient}
	var se *smtp.SMTPError
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var netErr net.Error
	switch {
	case errors.As(err, &se):
		e.Code = replyCode(se)
		e.Message = se.Message
	case errors.As(err, &certErr), errors.As(err, &unknownAuthority), errors.As(err, &hostErr):
		e.Message = "the certificate of Exchange's SMTP server does not verify"
		e.Explanation = "The gateway does not trust the certificate of the server at smtp_address. Check smtp_address in [exchange], and that nothing on the way (a proxy or firewall inspecting TLS) replaces Microsoft's certificate."
		return e
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		e.Message = "cannot reach Exchange's SMTP server, or it dropped the connection"
		return e
	default:
		// A protocol surprise (no STARTTLS offered): worth another try.
		e.Message = err.Error()
		return e
	}
	status := enhanced(se, "")
	switch {
	case se.Code == 421 || se.Code == 432 || status == "4.7.500":
		// Exchange is busy, or throttles this mailbox's sessions.
		e.Scope = ScopeMailbox
		e.Explanation = "Exchange Online is busy or throttles this mailbox; the gateway tries again later."
	case se.Code < 500:
	case stage == stageAuth || se.Code == 530:
		e.Kind, e.Scope = KindCredential, ScopeMailbox
		e.Explanation = smtpExplanations[status]
		if e.Explanation == "" {
			e.Explanation = smtpExplanations["5.7.3"]
		}
	case stage == stageConnect:
		// The server refuses the session itself (EHLO, STARTTLS): no
		// message can fix that.
		e.Explanation = "Exchange's SMTP server refused the session. Check smtp_address in [exchange]."
	default:
		e.Kind = KindMessage
		e.BounceStatus = status
		e.Explanation = messageExplanation(se, status)
		// The session still works for the next message.
		e.sessionUsable = true
	}
	return e
}

// messageExplanation says why Exchange refused one message.
func messageExplanation(se *smtp.SMTPError, status string) string {
	msg := strings.ToLower(se.Message)
	switch {
	case status == "5.7.60" || strings.Contains(msg, "sendasdenied"):
		return "The mailbox may not send with the From address of the message. Give it Send As rights for that address, or send from the mailbox's own address."
	case status == "5.3.4" || se.Code == 552:
		return "The message is too large for Microsoft 365."
	}
	return "Microsoft 365 refused the message: " + replyText(se)
}

// recipientsRefused is the failure of a message whose every recipient
// Exchange refused.
func recipientsRefused(refused []RecipientFailure) *Error {
	var names []string
	for _, r := range refused {
		names = append(names, r.Recipient+" ("+r.Reply+")")
	}
	e := &Error{Kind: KindMessage, way: waySMTP, sessionUsable: true, Message: "every recipient was refused: " + strings.Join(names, "; ")}
	e.Explanation = "Microsoft 365 refused every recipient: " + strings.Join(names, "; ")
	if len(refused) > 0 {
		e.BounceStatus = refused[0].Status
	}
	return e
}

// replyCode is "550 5.7.60": the reply code and enhanced status.
func replyCode(se *smtp.SMTPError) string {
	code := strconv.Itoa(se.Code)
	if s := enhanced(se, ""); s != "" {
		code += " " + s
	}
	return code
}

// replyText is the whole reply, as the server sent it.
func replyText(se *smtp.SMTPError) string { return replyCode(se) + " " + se.Message }

// enhanced is the reply's RFC 3463 status, or def without one.
func enhanced(se *smtp.SMTPError, def string) string {
	c := se.EnhancedCode
	if c == smtp.NoEnhancedCode || c[0] == 0 {
		return def
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// readError is a failure to read the message from the spool, not to write
// it to the server.
type readError struct{ err error }

func (r *readError) Error() string { return "read message: " + r.err.Error() }
func (r *readError) Unwrap() error { return r.err }

// spoolReader marks its reader's failures as readErrors.
type spoolReader struct{ r io.Reader }

func (s spoolReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// bccReaders are the readers of writeWithoutBcc, kept between messages
// so that each message does not allocate one of streamBuffer bytes.
var bccReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, streamBuffer) }}

// writeWithoutBcc copies the message to w byte for byte, except the Bcc
// header field (with its continuation lines), which must not travel.
func writeWithoutBcc(w io.Writer, r io.Reader) error {
	br := bccReaders.Get().(*bufio.Reader)
	br.Reset(spoolReader{r})
	defer func() {
		br.Reset(nil) // holds no message while pooled
		bccReaders.Put(br)
	}()
	skipping, lineStart := false, true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 && lineStart {
			if string(chunk) == "\r\n" || string(chunk) == "\n" {
				// The header ends: the body goes unchanged.
				if _, err := w.Write(chunk); err != nil {
					return err
				}
				_, err := br.WriteTo(w)
				return err
			}
			if chunk[0] != ' ' && chunk[0] != '\t' {
				// A new field; a continuation line belongs to the last.
				skipping = len(chunk) >= 4 && strings.EqualFold(string(chunk[:4]), "bcc:")
			}
		}
		if !skipping {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		lineStart = err == nil
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			return nil
		default:
			return err
		}
	}
}
