package smtpserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// session is one SMTP session: go-smtp creates it at EHLO and again after
// STARTTLS. Every error it hands to go-smtp is an *smtp.SMTPError from
// replyFor.
type session struct {
	srv    *Server
	lis    *listener
	smtp   *smtp.Conn
	conn   *trackedConn
	tls    bool
	client string     // "IP:port" as the spool and the logs record it
	addr   netip.Addr // client IP, for [[network]] matching

	// mu guards the fields below: with BDAT, go-smtp runs Data in its own
	// goroutine while Reset or Logout may be called.
	mu   sync.Mutex
	user *identity    // set by a successful AUTH
	tx   *transaction // nil outside a mail transaction
}

// transaction is what MAIL FROM and RCPT TO decided.
type transaction struct {
	id         *identity
	mailFrom   string
	recipients []string
}

func (s *Server) newSession(lis *listener, c *smtp.Conn) (smtp.Session, error) {
	netConn := c.Conn()
	_, isTLS := c.TLSConnectionState()
	tc := trackedOf(netConn)
	// After STARTTLS, goodbyes at shutdown must go through TLS.
	tc.setOuter(netConn)
	sess := &session{srv: s, lis: lis, smtp: c, conn: tc, tls: isTLS, client: netConn.RemoteAddr().String()}
	if ap, err := netip.ParseAddrPort(sess.client); err == nil {
		sess.addr = ap.Addr().Unmap()
	}
	return sess, nil
}

// refuse logs and counts a refusal and returns the reply for the client.
func (s *session) refuse(err error) error {
	r := replyFor(err)
	s.srv.metrics.refused.WithLabelValues(r.reason).Inc()
	s.srv.log.Info("refused", "client", s.client, "code", r.smtp.Code, "reason", err.Error())
	return r.smtp
}

// identityLocked returns the AUTH account, else the client's network, else nil.
func (s *session) identityLocked() *identity {
	if s.user != nil {
		return s.user
	}
	return s.srv.ids.network(s.addr)
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != nil {
		// A second MAIL FROM starts over.
		s.tx = nil
		s.conn.endTransaction()
	}
	id := s.identityLocked()
	switch {
	case id == nil:
		return s.refuse(fmt.Errorf("%w (MAIL FROM <%s>)", errNoIdentity, from))
	case from == "":
		return s.refuse(fmt.Errorf("%w (identity %s)", errNullSender, id.name))
	case !envelope.SenderAllowed(id.allowedSenders, from):
		return s.refuse(fmt.Errorf("%w: <%s> (identity %s)", errSenderNotAllowed, from, id.name))
	case !s.conn.beginTransaction():
		return s.refuse(errShuttingDown)
	}
	s.tx = &transaction{id: id, mailFrom: from}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !validAddress(to) {
		return s.refuse(fmt.Errorf("%w: <%s>", errBadRecipient, to))
	}
	if s.tx == nil {
		// go-smtp only calls Rcpt after a successful Mail.
		return s.refuse(errors.New("RCPT without a transaction"))
	}
	s.tx.recipients = append(s.tx.recipients, to)
	return nil
}

// Data streams the message into the spool; it is acknowledged only once
// the spool has it durably.
func (s *session) Data(r io.Reader) error {
	defer s.conn.endTransaction()
	defer liftLineLimit(s.smtp, r)()
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return s.refuse(errors.New("DATA without a transaction"))
	}
	env := &envelope.Envelope{
		Identity:       tx.id.name,
		Mailbox:        tx.id.mailboxFor(tx.mailFrom),
		AllowedSenders: tx.id.allowedSenders,
		MailFrom:       tx.mailFrom,
		Recipients:     tx.recipients,
		ClientAddr:     s.client,
		Received:       time.Now(),
	}
	in, err := s.srv.spool.Create(env)
	if err != nil {
		return s.refuse(fmt.Errorf("%w: %v", errSpool, err))
	}
	w := &spoolWriter{w: in}
	size, err := io.Copy(w, r)
	switch {
	case w.err != nil:
		in.Abort()
		return s.refuse(fmt.Errorf("%w: %v", errSpool, w.err))
	case errors.Is(err, smtp.ErrDataTooLarge):
		in.Abort()
		return s.refuse(fmt.Errorf("%w: more than %d bytes", smtp.ErrDataTooLarge, s.srv.cfg.Server.MaxMessageSize))
	case errors.Is(err, smtp.ErrTooLongLine):
		in.Abort()
		return s.refuse(err)
	case err != nil:
		in.Abort()
		return s.refuse(fmt.Errorf("%w: %v", errClientData, err))
	}
	id, err := in.Commit()
	if err != nil {
		return s.refuse(fmt.Errorf("%w: %v", errSpool, err))
	}
	s.srv.metrics.accepted.Inc()
	s.srv.log.Info("accepted", "id", id, "client", s.client, "identity", env.Identity,
		"mailbox", env.Mailbox, "size", size, "recipients", len(env.Recipients))
	// go-smtp sends a Data "error" with a 2xx code as the reply, which is
	// how the client learns the queue ID.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// spoolWriter remembers a write error, to tell spool trouble (4xx) from a
// client that broke off or sent too much.
type spoolWriter struct {
	w   io.Writer
	err error
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	s.mu.Unlock()
	s.conn.endTransaction()
}

func (s *session) Logout() error { return nil }

// validAddress checks a forward path that go-smtp has split into
// local@domain: the domain must be a host name Graph can deliver to.
func validAddress(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return false
	}
	domain := addr[at+1:]
	labels := strings.Split(domain, ".")
	if len(domain) > 253 || len(labels) < 2 {
		return false
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// trackedOf finds the trackedConn under a connection go-smtp hands over,
// with or without TLS on top.
func trackedOf(c net.Conn) *trackedConn {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	return c.(*trackedConn)
}
