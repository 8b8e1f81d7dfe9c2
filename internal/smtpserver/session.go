package smtpserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/safetext"
)

// session is one SMTP session: go-smtp creates it at EHLO and again after
// STARTTLS. Every error it hands to go-smtp is an *smtp.SMTPError from
// replyFor.
type session struct {
	srv    *Server
	lis    *listener
	smtp   *smtp.Conn
	conn   *clients.Conn
	state  *connState
	tls    bool
	client string       // "IP:port" as the spool records it
	addr   netip.Addr   // client IP, for [[network]] matching
	log    *slog.Logger // the connection's: carries its id and client

	// mu guards the fields below: with BDAT, go-smtp runs Data in its own
	// goroutine while Reset or Logout may be called.
	mu      sync.Mutex
	user    *clients.Identity // set by a successful AUTH
	tx      *transaction      // nil outside a mail transaction
	pending *authExchange     // an AUTH exchange not finished yet
}

// transaction is what MAIL FROM and RCPT TO decided.
type transaction struct {
	id         *clients.Identity
	mailFrom   string
	recipients []string
}

func (s *Server) newSession(lis *listener, c *smtp.Conn) (smtp.Session, error) {
	netConn := c.Conn()
	conn := clients.Of(netConn)
	state := s.conns.state(conn)
	if conn == nil || state == nil {
		return nil, errors.New("connection not admitted through the gate")
	}
	_, isTLS := clients.TLSState(netConn)
	state.lines.helo.Store(true)
	// After STARTTLS, goodbyes at shutdown must go through TLS.
	conn.SetOuter(netConn)
	return &session{srv: s, lis: lis, smtp: c, conn: conn, state: state, tls: isTLS,
		client: netConn.RemoteAddr().String(), addr: conn.Addr(), log: conn.Log()}, nil
}

// refuse logs and counts a refusal and returns the reply for the client.
func (s *session) refuse(err error) error {
	return s.refuseLogged(slog.LevelInfo, "refused", err)
}

// refuseLogged is refuse with its own log message. The connection's watch
// counts the reply once it is written: beyond errors_before_delay each
// error reply waits a little longer, and beyond max_errors the client gets
// 421 and the connection closes, so that a client cannot make the gateway
// refuse (and log) thousands of commands.
func (s *session) refuseLogged(level slog.Level, msg string, err error) error {
	r := replyFor(err)
	if r.smtp.Code == 421 {
		s.conn.CloseAfterNextWrite()
	}
	s.srv.metrics.refused.WithLabelValues(r.reason).Inc()
	s.log.Log(context.Background(), level, msg, "code", r.smtp.Code, "reason", safetext.Log(err.Error()))
	return r.smtp
}

// identityLocked returns the AUTH account, else the client's network, else nil.
func (s *session) identityLocked() *clients.Identity {
	if s.user != nil {
		return s.user
	}
	return s.srv.gate.Network(s.addr)
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.mail(from, opts); err != nil {
		return s.refuse(err)
	}
	return nil
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != nil {
		// A second MAIL FROM starts over.
		s.tx = nil
		s.conn.End()
	}
	id := s.identityLocked()
	maxSize := int64(s.srv.cfg.Server.MaxMessageSize)
	switch {
	case id == nil:
		return fmt.Errorf("%w (MAIL FROM <%s>)", errNoIdentity, from)
	case from == "":
		return fmt.Errorf("%w (identity %s)", errNullSender, id.Name)
	case !sizedAddress(from):
		return fmt.Errorf("%w: <%s>", errBadSender, from)
	case !envelope.SenderAllowed(id.AllowedSenders, from):
		return fmt.Errorf("%w: <%s> (identity %s)", errSenderNotAllowed, from, id.Name)
	case opts != nil && opts.Size > maxSize:
		return fmt.Errorf("%w: SIZE=%d declared, more than %d bytes", smtp.ErrDataTooLarge, opts.Size, maxSize)
	case s.srv.rates.over(id, 0):
		return fmt.Errorf("%w: %s", errRateLimited, id.Name)
	}
	if err := s.srv.spool.HasRoom(int64(s.srv.cfg.Queue.MinFreeSpace)); err != nil {
		if errors.Is(err, queue.ErrNoRoom) {
			return fmt.Errorf("%w: %v", errNoRoom, err)
		}
		return fmt.Errorf("%w: %v", errSpool, err)
	}
	if !s.conn.Begin() {
		return errShuttingDown
	}
	s.tx = &transaction{id: id, mailFrom: from}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.rcpt(to); err != nil {
		return s.refuse(err)
	}
	return nil
}

func (s *session) rcpt(to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !sizedAddress(to) || !validAddress(to):
		return fmt.Errorf("%w: <%s>", errBadRecipient, to)
	case s.tx == nil:
		// go-smtp only calls Rcpt after a successful Mail.
		return errors.New("RCPT without a transaction")
	case !recipientAllowed(s.tx.id, to):
		return fmt.Errorf("%w: <%s> (identity %s)", errRecipientNotAllowed, to, s.tx.id.Name)
	case s.srv.rates.over(s.tx.id, len(s.tx.recipients)+1):
		return fmt.Errorf("%w: %s", errRateLimited, s.tx.id.Name)
	}
	s.tx.recipients = append(s.tx.recipients, to)
	return nil
}

// Data streams the message into the spool; it is acknowledged only once
// the spool has it durably.
func (s *session) Data(r io.Reader) error {
	defer s.conn.End()
	defer liftLineLimit(s.smtp, r)()
	// go-smtp gives a BDAT transfer to Data through a pipe.
	_, bdat := r.(*io.PipeReader)
	id, err := s.data(r)
	if err == nil {
		// go-smtp sends a Data "error" with a 2xx code as the reply, which
		// is how the client learns the queue ID.
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
	}
	reply := s.refuse(err)
	switch {
	case bdat && (errors.Is(err, smtp.ErrDataTooLarge) || errors.Is(err, errHeaderTooLarge)):
		// go-smtp would read the rest of the chunk, up to 4 GB, before
		// answering: answer now and close instead.
		s.conn.SayGoodbye(replyLine(reply.(*smtp.SMTPError)))
	case !bdat:
		// go-smtp reads the rest of the message before it answers, once
		// Data has put the line limit back: read it here, where lines of
		// any length are still allowed.
		io.Copy(io.Discard, r)
	}
	return reply
}

// data spools the message and returns its queue ID.
func (s *session) data(r io.Reader) (string, error) {
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return "", errors.New("DATA without a transaction")
	}
	// The body may take read_timeout, longer than a command may.
	s.conn.AllowRead(s.srv.cfg.Server.ReadTimeout.D())
	env := &envelope.Envelope{
		Identity:       tx.id.Name,
		Mailbox:        mailboxFor(tx.id, tx.mailFrom),
		AllowedSenders: tx.id.AllowedSenders,
		MailFrom:       tx.mailFrom,
		Recipients:     tx.recipients,
		ClientAddr:     s.client,
		Received:       time.Now(),
	}
	// min_free_space is kept while the message is written, not only at
	// MAIL FROM, counting the other messages being received.
	in, err := s.srv.spool.CreateKeepingFree(env, int64(s.srv.cfg.Queue.MinFreeSpace))
	if err != nil {
		return "", fmt.Errorf("%w: %v", errSpool, err)
	}
	maxSize := int64(s.srv.cfg.Server.MaxMessageSize)
	header := &headerCapture{}
	w := &spoolWriter{w: in}
	buf := copyBuffers.Get().(*[]byte)
	size, err := io.CopyBuffer(w, io.TeeReader(newHeaderLimit(&sizeLimit{r: r, left: maxSize}), header), *buf)
	copyBuffers.Put(buf)
	if err == nil {
		err = s.checkMessage(tx.id, size, header)
	}
	switch {
	case errors.Is(w.err, queue.ErrNoRoom):
		err = fmt.Errorf("%w: %v", errNoRoom, w.err)
	case w.err != nil:
		err = fmt.Errorf("%w: %v", errSpool, w.err)
	case errors.Is(err, smtp.ErrDataTooLarge):
		err = fmt.Errorf("%w: more than %d bytes", smtp.ErrDataTooLarge, maxSize)
	case err != nil && replyFor(err).err == nil:
		err = fmt.Errorf("%w: %v", errClientData, err)
	}
	if err != nil {
		in.Abort()
		return "", err
	}
	id, err := in.Commit()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errSpool, err)
	}
	s.srv.rates.sent(tx.id, len(tx.recipients))
	s.srv.metrics.accepted.Inc()
	s.recordAccepted(id, env, size, header.buf)
	return id, nil
}

// copyBuffers carry messages from the client to the spool: a new buffer
// for each message, as io.Copy makes, was a good part of the garbage of a
// small message.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// checkMessage refuses what must not be queued once the whole message is
// in: an empty message (DATA with nothing, or BDAT 0 LAST alone), and for
// header_from = "reject" a sender field the identity may not use.
func (s *session) checkMessage(id *clients.Identity, size int64, header *headerCapture) error {
	if size == 0 {
		return errEmptyMessage
	}
	if id.Policy.HeaderFrom != config.HeaderFromReject {
		return nil
	}
	if header.overflow {
		return fmt.Errorf("%w: header over %d bytes, not checked (identity %s)", errHeaderSender, maxCheckedHeader, id.Name)
	}
	foreign, err := convert.ForeignSenders(bytes.NewReader(header.buf), id.AllowedSenders)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v (identity %s)", errHeaderSender, err, id.Name)
	case len(foreign) > 0:
		return fmt.Errorf("%w: %q (identity %s)", errHeaderSender, foreign, id.Name)
	}
	return nil
}

// maxCheckedHeader bounds the header kept to check its sender fields.
const maxCheckedHeader = 256 << 10

// headerCapture keeps the start of a message until the blank line that
// ends its header.
type headerCapture struct {
	buf      []byte
	done     bool
	overflow bool
}

func (h *headerCapture) Write(p []byte) (int, error) {
	if h.done {
		return len(p), nil
	}
	// Only the header is appended, never the body after it: the blank line
	// is looked for across the last bytes kept and the start of p, then
	// in p.
	tail := h.buf[max(len(h.buf)-3, 0):]
	var joint [6]byte
	n := copy(joint[:], tail)
	n += copy(joint[n:], p)
	take := blankLineEnd(joint[:n]) - len(tail)
	if take < 0 {
		take = blankLineEnd(p)
	}
	switch {
	case take >= 0:
		h.buf = append(h.buf, p[:take]...)
		h.done = true
	case len(h.buf)+len(p) > maxCheckedHeader:
		h.buf = append(h.buf, p[:maxCheckedHeader-len(h.buf)]...)
		h.done, h.overflow = true, true
	default:
		h.buf = append(h.buf, p...)
	}
	return len(p), nil
}

// blankLineEnd returns where the first blank line in b ends, CRLF or bare
// LF, or -1 for none.
func blankLineEnd(b []byte) int {
	end := -1
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		end = i + 4
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 && (end < 0 || i+2 < end) {
		end = i + 2
	}
	return end
}

// sizeLimit fails with smtp.ErrDataTooLarge once more than left bytes
// have been read.
type sizeLimit struct {
	r    io.Reader
	left int64
}

func (l *sizeLimit) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, smtp.ErrDataTooLarge
	}
	return n, err
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
	s.conn.End()
}

// Logout ends the session: at QUIT or close, and right after STARTTLS,
// when go-smtp has put TLS over the connection and the watch must follow
// it above (see watchAboveTLS).
func (s *session) Logout() error {
	s.abandonAuth()
	if _, nowTLS := clients.TLSState(s.smtp.Conn()); nowTLS && !s.tls {
		if !watchAboveTLS(s.smtp, s.state.watch) {
			s.log.Error("closing the connection: cannot watch the conversation after STARTTLS with this go-smtp version")
			s.conn.Close()
		}
	}
	return nil
}

// RFC 5321 section 4.5.3.1 sizes.
const (
	maxLocalPart = 64
	maxAddress   = 254 // a path of 256 octets with its angle brackets
)

// sizedAddress checks the sizes RFC 5321 allows, and that addr holds no
// control character: it ends up in logs, in the spool and in headers.
func sizedAddress(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if len(addr) > maxAddress || at > maxLocalPart {
		return false
	}
	return !safetext.HasControl(addr)
}

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
