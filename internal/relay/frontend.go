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
	Protocol string // config.ProtocolIMAP or config.ProtocolPOP3
	Goodbye  string // starts the protocol's last words: "* BYE " or "-ERR "
	Listener config.Listener
	TLS      func() *tls.Config // the certificate in use; nil for tls = "none"
	Backend  *Backend
	Logger   *slog.Logger // for what concerns the listener; sessions log with their connection's
}

// PreLogin is a protocol's part of a session: it answers the client until
// a login succeeded upstream, and returns that connection, or nil when
// the session ended (with info.End saying how).
type PreLogin func(ctx context.Context, c *Client, info *Session) net.Conn

// Accept admits each connection of ln through the gate and serves it
// with serve, until ln is closed; then it waits for the sessions, which
// end when ctx is done. A refused connection gets the protocol's refusal
// line on a plaintext listener and nothing on an implicit TLS one.
func (f *Frontend) Accept(ctx context.Context, ln net.Listener, refusal string, serve func(context.Context, *clients.Conn)) {
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
				io.WriteString(raw, refusal+"\r\n")
			}
			raw.Close()
			continue
		}
		wg.Go(func() { serve(ctx, c) })
	}
}

// Serve runs one admitted connection to its end and closes it: until ctx
// is done (shutdown) or either side leaves. It does the implicit TLS
// handshake, runs preLogin, then relays with idleAfterLogin as the idle
// limit (or idle_timeout when longer). The conversation before login is
// logged at level debug for the clients the gate names.
func (f *Frontend) Serve(ctx context.Context, c *clients.Conn, idleAfterLogin time.Duration, preLogin PreLogin) {
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
	client.admitted, client.info, client.goodbye = c, info, f.Goodbye
	upstream := preLogin(ctx, client, info)
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
	info.Relay = Pipe(down, upstream, pending, max(idleAfterLogin, limits.IdleTimeout.D()), ctx.Done(), in, out)
}

// LoginAllowed reports whether c may send a password: under TLS, or on a
// listener with allow_insecure_auth.
func (f *Frontend) LoginAllowed(c *Client) bool {
	return c.TLS() || f.Listener.AllowInsecureAuth
}

// StartTLSOffered reports whether c may start TLS now.
func (f *Frontend) StartTLSOffered(c *Client) bool {
	return f.Listener.TLS == config.TLSStartTLS && !c.TLS()
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
