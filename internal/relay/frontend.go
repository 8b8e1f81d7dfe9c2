package relay

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
)

// Frontend is what the IMAP and POP3 listeners share: the listener's
// settings and the session's course around the protocol's own part.
type Frontend struct {
	// The caller's part: the listener and the rest of the gateway.
	Listener config.Listener
	TLS      func() *tls.Config // the certificate in use; nil for tls = "none"
	Backend  *Backend
	Logger   *slog.Logger // for what concerns the listener; sessions log with their connection's

	// The protocol's part, which its New fills in.
	Protocol       string                  // config.ProtocolIMAP or config.ProtocolPOP3
	Goodbye        string                  // starts the protocol's last words: "* BYE " or "-ERR "
	Refusal        string                  // the answer to a connection the gate refused
	Greeting       func(c *Client) string  // the first line, which may depend on TLS
	MaxLine        int                     // bounds a command line
	NewHandler     func(c *Client) Handler // answers the commands of c's session
	Replies        LoginReplies
	IdleAfterLogin time.Duration // how long a relayed session may be silent, when longer than idle_timeout
}

// Handler is a session's protocol part: it answers one command line
// before login, and returns the upstream connection after a login
// succeeded upstream, or next = false when the session must end (with
// the session's End saying how, or empty after a failed write).
type Handler func(ctx context.Context, line []byte) (upstream net.Conn, next bool)

// Accept admits each connection of ln through the gate and serves it,
// until ln is closed; then it waits for the sessions, which end when ctx
// is done. A refused connection gets the Refusal line on a plaintext
// listener and nothing on an implicit TLS one.
func (f *Frontend) Accept(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// For example out of file descriptors: wait rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			f.Logger.Warn("accept failed", "listener", f.Listener.Address, "error", err, "retry_in_seconds", delay.Seconds())
			time.Sleep(delay)
			continue
		}
		delay = 0
		c, err := f.Backend.Gate.Admit(raw, clients.Admission{
			Protocol:  f.Protocol,
			FirstRead: f.Backend.Gate.Limits().IdleTimeout.D(),
			// No lifetime: Serve bounds the time before login, and a
			// logged-in session in IDLE may last for hours.
		})
		if err != nil {
			if f.Listener.TLS != config.TLSImplicit {
				raw.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				io.WriteString(raw, f.Refusal+"\r\n")
			}
			raw.Close()
			continue
		}
		wg.Go(func() { f.Serve(ctx, c) })
	}
}

// Serve runs one admitted connection to its end and closes it: until ctx
// is done (shutdown) or either side leaves. It does the implicit TLS
// handshake, answers the commands before login, then relays with
// IdleAfterLogin as the idle limit (or idle_timeout when longer). The
// conversation before login is logged at level debug for the clients the
// gate names.
func (f *Frontend) Serve(ctx context.Context, c *clients.Conn) {
	info := &Session{Protocol: f.Protocol}
	start := time.Now()
	defer func() { info.Log(ctx, c.Log(), time.Since(start)) }()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	limits := f.Backend.Gate.Limits()
	deadline := start.Add(limits.SessionLifetime.D())
	var conn net.Conn = c
	if f.Listener.TLS == config.TLSImplicit {
		tconn := tls.Server(c, f.TLS())
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tconn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			info.End = "TLS handshake failed"
			return
		}
		conn = tconn
	}
	var debug *slog.Logger
	if c.Debug() {
		debug = c.Log()
	}
	client := NewClient(conn, f.Listener.TLS == config.TLSImplicit, limits.IdleTimeout.D(), deadline, debug)
	client.f, client.admitted, client.info = f, c, info
	upstream := f.preLogin(ctx, client)
	if upstream == nil {
		if info.End == "" {
			info.End = EndClientClosed // a write to the client failed: the front ends leave End empty then
		}
		return
	}
	stop() // from here Pipe ends on ctx itself
	down, pending := client.HandOver()
	var in, out Counter
	if m := f.Backend.Metrics; m != nil {
		in, out = m.Bytes(f.Protocol)
	}
	info.Relay = Pipe(down, upstream, pending, max(f.IdleAfterLogin, limits.IdleTimeout.D()), ctx.Done(), in, out)
}

// preLogin greets the client and answers its commands until a login
// succeeded upstream; it returns that connection, or nil when the session
// ended.
func (f *Frontend) preLogin(ctx context.Context, c *Client) net.Conn {
	if c.Write(f.Greeting(c)) != nil {
		return nil
	}
	command := f.NewHandler(c)
	for {
		line, err := c.ReadLine(f.MaxLine)
		if err != nil {
			c.ReadFailed(err)
			return nil
		}
		upstream, next := command(ctx, line)
		if upstream != nil || !next {
			return upstream
		}
	}
}

// DecodePlain reads a base64 SASL PLAIN response (RFC 4616): authorization
// identity (empty, or the user's own name: acting as another user is not
// offered), user name and password.
func DecodePlain(b64 string) (user, pass string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", "", false
	}
	authz, rest, ok1 := strings.Cut(string(raw), "\x00")
	user, pass, ok2 := strings.Cut(rest, "\x00")
	if !ok1 || !ok2 || user == "" || strings.Contains(pass, "\x00") || authz != "" && authz != user {
		return "", "", false
	}
	return user, pass, true
}
