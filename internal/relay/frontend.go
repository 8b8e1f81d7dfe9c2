package relay

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
)

// Frontend is what the IMAP and POP3 listeners share: the listener's
// settings and the session's course around the protocol's own part.
type Frontend struct {
	Protocol        string // config.ProtocolIMAP or config.ProtocolPOP3
	Listener        config.Listener
	TLS             func() *tls.Config // the certificate in use; nil for tls = "none"
	Limits          config.Limits      // idle_timeout, session_lifetime (before login), max_errors
	MaxAuthFailures int                // failed logins on one connection before it is closed
	Backend         *Backend
	Logger          *slog.Logger
}

// PreLogin is a protocol's part of a session: it answers the client until
// a login succeeded upstream, and returns that connection, or nil when
// the session ended (with info.End saying how).
type PreLogin func(ctx context.Context, c *Client, info *Session) net.Conn

// Serve runs one client connection to its end and closes it: until ctx
// is done (shutdown) or either side leaves. It does the implicit TLS
// handshake, runs preLogin, then relays with idleAfterLogin as the idle
// limit (or idle_timeout when longer). id names the connection in the
// log; debug, when not nil, receives the conversation before login.
func (f *Frontend) Serve(ctx context.Context, conn net.Conn, id string, debug *slog.Logger, idleAfterLogin time.Duration, preLogin PreLogin) {
	info := &Session{ID: id, Protocol: f.Protocol, Client: conn.RemoteAddr().String(), Start: time.Now()}
	m := f.Backend.Metrics
	if m != nil {
		defer m.Opened(f.Protocol)()
	}
	defer info.Log(ctx, f.Logger)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	deadline := info.Start.Add(f.Limits.SessionLifetime.D())
	isTLS := false
	if f.Listener.TLS == config.TLSImplicit {
		tconn := tls.Server(conn, f.TLS())
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tconn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			info.End = "TLS handshake failed"
			return
		}
		conn, isTLS = tconn, true
	}
	c := NewClient(conn, isTLS, f.Limits.IdleTimeout.D(), deadline, debug)
	upstream := preLogin(ctx, c, info)
	if upstream == nil {
		if info.End == "" {
			info.End = "client closed" // a write to the client failed
		}
		return
	}
	stop() // from here Pipe ends on ctx itself
	client, pending := c.HandOver()
	var in, out Counter
	if m != nil {
		in, out = m.Bytes(f.Protocol)
	}
	info.Relay = Pipe(client, upstream, pending, max(idleAfterLogin, f.Limits.IdleTimeout.D()), ctx.Done(), in, out)
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
