package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/certs"
	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/imapserver"
	"github.com/smtpgw/smtpgw/internal/pop3server"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// readers serves the IMAP and POP3 listeners: applications that read a
// mailbox, through the same gate as SMTP clients.
type readers struct {
	listeners []*readerListener

	ctx    context.Context // ends every session at shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type readerListener struct {
	cfg    config.Listener
	tls    *certs.Swappable // nil for tls = "none"
	accept func(context.Context, net.Listener)
	ln     net.Listener
}

// newReaders prepares the IMAP and POP3 listeners of cfg; none when it has
// none. Their TLS listeners serve the certificates of served, which the
// gateway reloads. Reading needs the Graph target: its credential gets
// the tokens, and Entra ID's verdicts on it reach state, the upstream-down
// state that sending keeps.
func newReaders(cfg *config.Config, gate *clients.Gate, served *certs.Served, target upstream.Target, state credentialState, logger *slog.Logger, registry prometheus.Registerer) (*readers, error) {
	r := &readers{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	var backend *relay.Backend
	for _, lc := range cfg.Listeners {
		if lc.Protocol != config.ProtocolIMAP && lc.Protocol != config.ProtocolPOP3 {
			continue
		}
		if backend == nil {
			tokens, ok := target.(upstream.TokenSource)
			if !ok {
				return nil, fmt.Errorf("listener %s: %s needs the [graph] app credential", lc.Address, lc.Protocol)
			}
			metrics := relay.NewMetrics()
			if err := metrics.Register(registry); err != nil {
				return nil, err
			}
			reloader, _ := target.(upstream.CredentialReloader)
			rt := &readerTokens{tokens: tokens, scope: cfg.Exchange.Scope, reloader: reloader, state: state, log: logger}
			dialer := &upstream.MailboxDialer{
				IMAPAddress: cfg.Exchange.IMAPAddress,
				POP3Address: cfg.Exchange.POP3Address,
				Token:       rt.Token,
			}
			backend = &relay.Backend{Gate: gate, Dial: dialer.Dial, Metrics: metrics}
		}
		l := &readerListener{cfg: lc, tls: served.Listener(lc)}
		f := relay.Frontend{Listener: lc, Backend: backend, Logger: logger}
		if l.tls != nil {
			f.TLS = l.tls.Config
		}
		if lc.Protocol == config.ProtocolIMAP {
			l.accept = imapserver.New(f).Accept
		} else {
			l.accept = pop3server.New(f).Accept
		}
		r.listeners = append(r.listeners, l)
	}
	return r, nil
}

// Start opens the listeners and serves them.
func (r *readers) Start() error {
	for _, l := range r.listeners {
		ln, err := net.Listen("tcp", l.cfg.Address)
		if err != nil {
			r.Shutdown()
			return fmt.Errorf("listener %s: %w", l.cfg.Address, err)
		}
		l.ln = ln
		r.wg.Go(func() { l.accept(r.ctx, ln) })
	}
	return nil
}

// Addrs are the addresses listened on.
func (r *readers) Addrs() []net.Addr {
	var addrs []net.Addr
	for _, l := range r.listeners {
		if l.ln != nil {
			addrs = append(addrs, l.ln.Addr())
		}
	}
	return addrs
}

// Shutdown closes the listeners and ends every session: a reading client
// reconnects, and nothing it sent is lost.
func (r *readers) Shutdown() {
	for _, l := range r.listeners {
		if l.ln != nil {
			l.ln.Close()
		}
	}
	r.cancel()
	r.wg.Wait()
}

// credentialState is the upstream-down state sending keeps (the delivery
// engine's): /status, smtpgw_upstream_up, /readyz and one ERROR line per
// change.
type credentialState interface {
	CredentialRefused(cause *upstream.Error)
	CredentialAccepted()
}

// readerTokens gets the reading sessions' tokens and tells state what
// Entra ID answered: a refusal of the credential, and the first token
// after one. While refused, the credential files are read again before
// each request, as sending's probes do, so that fixing the file is all
// an admin has to do even when no message waits.
type readerTokens struct {
	tokens   upstream.TokenSource
	scope    string
	reloader upstream.CredentialReloader // nil when the target has no files to read again
	state    credentialState
	log      *slog.Logger
	refused  atomic.Bool // Entra ID refused the last request
}

func (t *readerTokens) Token(ctx context.Context) (string, error) {
	if t.refused.Load() && t.reloader != nil {
		if err := t.reloader.ReloadCredential(); err != nil {
			t.log.Error("cannot read the credential files again; asking with the credential in use", "error", err)
		}
	}
	token, err := t.tokens.Token(ctx, t.scope)
	var ue *upstream.Error
	switch {
	case err == nil:
		// A token after a refusal was issued now: none was cached.
		if t.refused.Swap(false) {
			t.state.CredentialAccepted()
		}
	case errors.As(err, &ue) && ue.EntraRefused():
		t.refused.Store(true)
		t.state.CredentialRefused(ue)
	}
	return token, err
}
