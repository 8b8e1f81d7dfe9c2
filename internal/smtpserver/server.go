// Package smtpserver is the SMTP front end: it accepts submissions from
// printers and applications on the configured listeners, decides who the
// client is (an AUTH account or an allowlisted network), enforces sender
// policy and limits, and streams each accepted message into the spool. It
// never relays for an unidentified client.
package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/certs"
	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/safetext"
	"github.com/smtpgw/smtpgw/internal/trace"
)

// Server serves every [[listener]] of a configuration.
type Server struct {
	cfg       *config.Config
	spool     *queue.Spool
	log       *slog.Logger
	gate      *clients.Gate // identities, admission, logins; shared with other front ends
	metrics   *metrics
	conns     *registry
	rates     *identityRates
	listeners []*listener
	trace     atomic.Pointer[trace.Writer] // nil: no message trace
	wg        sync.WaitGroup               // accept loops, go-smtp servers, goodbyes
}

// listener is one [[listener]]: a go-smtp server of its own, since TLS and
// AUTH settings differ per listener.
type listener struct {
	cfg     config.Listener
	tls     *certs.Swappable // nil for tls = "none"
	smtp    *smtp.Server
	raw     net.Listener
	handoff *handoffListener
}

// New prepares a server for cfg, whose clients gate admits and logs in
// and whose TLS listeners serve the certificates of served (which the
// gateway reloads); Start binds the listeners. Listener MinVersion and
// network Prefixes are read as config.Load sets them.
func New(cfg *config.Config, spool *queue.Spool, gate *clients.Gate, served *certs.Served, logger *slog.Logger) (*Server, error) {
	s := &Server{
		cfg:     cfg,
		spool:   spool,
		log:     logger,
		gate:    gate,
		metrics: newMetrics(served),
		conns:   newRegistry(),
		rates:   newIdentityRates(),
	}
	for _, lc := range cfg.Listeners {
		if lc.Protocol == config.ProtocolIMAP || lc.Protocol == config.ProtocolPOP3 {
			continue // served by imapserver and pop3server
		}
		l := &listener{cfg: lc}
		switch lc.TLS {
		case config.TLSNone, "":
		case config.TLSStartTLS, config.TLSImplicit:
			l.tls = served.Listener(lc)
		default:
			return nil, fmt.Errorf("listener %s: unknown tls mode %q", lc.Address, lc.TLS)
		}
		l.smtp = s.newSMTPServer(l)
		s.listeners = append(s.listeners, l)
	}
	return s, nil
}

func (s *Server) newSMTPServer(l *listener) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(l, c)
	}))
	srv.Domain = s.cfg.Server.Hostname
	// The session enforces max_message_size itself (see session.Data): with
	// the limit set here, go-smtp would answer an oversized BDAT chunk and
	// then read all of it, up to 4 GB, instead of closing the connection.
	// EHLO therefore advertises SIZE without a number (RFC 1870 allows it).
	srv.MaxMessageBytes = 0
	srv.MaxRecipients = s.cfg.Server.MaxRecipients
	// go-smtp sets this deadline before each command; the message body
	// gets read_timeout (session.Data), and the gate's clients.Conn caps
	// both at the session's lifetime.
	srv.ReadTimeout = s.gate.Limits().IdleTimeout.D()
	srv.WriteTimeout = s.cfg.Server.WriteTimeout.D()
	// The session decides whether AUTH is allowed without TLS (see
	// session.authAllowed), so that the refusal carries our reply code.
	srv.AllowInsecureAuth = true
	if l.cfg.TLS == config.TLSStartTLS {
		srv.TLSConfig = l.tls.Config()
	}
	srv.ErrorLog = smtpLog{s.log.With("listener", l.cfg.Address)}
	return srv
}

// Start binds every listener and starts serving. If any address cannot be
// bound, nothing stays bound and the error names the address.
func (s *Server) Start() error {
	for _, l := range s.listeners {
		raw, err := net.Listen("tcp", l.cfg.Address)
		if err != nil {
			for _, bound := range s.listeners {
				if bound.raw != nil {
					bound.raw.Close()
					bound.raw = nil
				}
			}
			return fmt.Errorf("listener %s: %w", l.cfg.Address, err)
		}
		l.raw = raw
		l.handoff = newHandoffListener(raw.Addr())
	}
	for _, l := range s.listeners {
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			s.accept(l)
		}()
		go func() {
			defer s.wg.Done()
			l.smtp.Serve(l.handoff)
		}()
	}
	return nil
}

// Addrs returns the bound address of every listener, in configuration
// order; useful when a listener asked for port 0.
func (s *Server) Addrs() []net.Addr {
	var addrs []net.Addr
	for _, l := range s.listeners {
		if l.raw != nil {
			addrs = append(addrs, l.raw.Addr())
		}
	}
	return addrs
}

// accept admits connections to the go-smtp server of l, or refuses them
// (see refuse) when the gate says so or the server is shutting down.
func (s *Server) accept(l *listener) {
	var delay time.Duration
	for {
		raw, err := l.raw.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// For example out of file descriptors: wait rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "listener", l.cfg.Address, "error", err, "retry_in_seconds", delay.Seconds())
			time.Sleep(delay)
			continue
		}
		delay = 0
		limits := s.gate.Limits()
		c, err := s.gate.Admit(raw, clients.Admission{
			Protocol:  protocol,
			Lifetime:  limits.SessionLifetime.D(),
			FirstRead: limits.IdleTimeout.D(),
			SniffHTTP: true,
			Closed:    s.conns.remove,
		})
		if err != nil {
			s.refuse(l, raw, err)
			continue
		}
		// The watch goes above TLS, where the replies can be read; go-smtp
		// finds the TLS state under it (see newSession).
		lines := &smtpLines{conn: c, debug: c.Debug(), refused: s.metrics.refused}
		watch := c.Watch(lines)
		var conn net.Conn = c
		if l.cfg.TLS == config.TLSImplicit {
			conn = tls.Server(c, l.tls.Config())
		}
		conn = watch.Conn(conn)
		c.SetOuter(conn)
		if !s.conns.add(c, &connState{watch: watch, lines: lines}) {
			c.SayGoodbye(replyLine(replyFor(errShuttingDown).smtp))
			continue
		}
		if !l.handoff.deliver(conn) {
			c.Close()
		}
	}
}

// protocol names SMTP connections in the gate's logs and metrics.
const protocol = "smtp"

// refuse answers a connection that will not be served: 421 on a plain
// listener, written at once (a fresh connection's socket buffer takes it),
// and nothing on an implicit TLS listener, where a reply would need a
// handshake first. The gate logs refusals as a summary.
func (s *Server) refuse(l *listener, raw net.Conn, reason error) {
	r := replyFor(reason)
	s.metrics.refused.WithLabelValues(r.reason).Inc()
	if l.cfg.TLS != config.TLSImplicit {
		raw.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
		io.WriteString(raw, replyLine(r.smtp))
	}
	raw.Close()
}

// refusalWriteTimeout bounds the write of a refused connection's 421.
const refusalWriteTimeout = 100 * time.Millisecond

// Shutdown stops the server. From the moment it is called, new connections
// are answered 421 4.3.2 and closed, and idle sessions are told the same;
// sessions inside a mail transaction may finish it and are closed after its
// final reply. When ctx ends first, the remaining connections are closed
// and ctx's error is returned. The listeners close when Shutdown returns.
func (s *Server) Shutdown(ctx context.Context) error {
	conns, empty := s.conns.drain()
	goodbye := replyLine(replyFor(errShuttingDown).smtp)
	for _, c := range conns {
		// Concurrently: a goodbye may wait on a slow client's TLS handshake.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.Drain(goodbye)
		}()
	}
	var err error
	select {
	case <-empty:
	case <-ctx.Done():
		err = ctx.Err()
		s.conns.closeAll()
	}
	for _, l := range s.listeners {
		if l.raw != nil {
			l.raw.Close()
			// go-smtp's Close only closes listeners its Serve has already
			// registered; a Serve goroutine not yet started would then
			// wait on the handoff forever.
			l.handoff.Close()
		}
		l.smtp.Close()
	}
	s.wg.Wait()
	return err
}

// smtpLog receives go-smtp's own reports: failed TLS handshakes, broken
// connections, and recovered panics.
type smtpLog struct{ log *slog.Logger }

func (l smtpLog) Printf(format string, v ...any) { l.report(fmt.Sprintf(format, v...), v) }
func (l smtpLog) Println(v ...any)               { l.report(fmt.Sprintln(v...), v) }

func (l smtpLog) report(msg string, args []any) {
	msg = strings.TrimSpace(msg)
	switch {
	case strings.HasPrefix(msg, "panic"):
		// The stack is ours, worth keeping whole.
		l.log.Error("smtp", "detail", msg)
	case routineDisconnect(args):
		// Printers reset or drop connections as a matter of course; at
		// INFO these would read like incidents.
		l.log.Debug("smtp", "detail", safetext.Log(msg))
	default:
		l.log.Info("smtp", "detail", safetext.Log(msg))
	}
}

// routineDisconnect reports whether one of a go-smtp report's arguments is
// the error of a client that went away: a reset, a write to a closed
// connection, or an end of input in the middle of a TLS handshake.
func routineDisconnect(args []any) bool {
	for _, a := range args {
		err, ok := a.(error)
		if !ok {
			continue
		}
		for _, routine := range append([]error{io.EOF, io.ErrUnexpectedEOF, net.ErrClosed}, socketGone...) {
			if errors.Is(err, routine) {
				return true
			}
		}
	}
	return false
}
