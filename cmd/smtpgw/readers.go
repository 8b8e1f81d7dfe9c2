package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"

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
	spoolDir  string
	log       *slog.Logger

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
// none. Reading needs the Graph target: its credential gets the tokens.
func newReaders(cfg *config.Config, gate *clients.Gate, target upstream.Target, spoolDir string, logger *slog.Logger, registry prometheus.Registerer) (*readers, error) {
	r := &readers{spoolDir: spoolDir, log: logger}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	var served []tls.Certificate
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
			scope := cfg.Exchange.Scope
			dialer := &upstream.MailboxDialer{
				IMAPAddress: cfg.Exchange.IMAPAddress,
				POP3Address: cfg.Exchange.POP3Address,
				Token:       func(ctx context.Context) (string, error) { return tokens.Token(ctx, scope) },
			}
			backend = &relay.Backend{Gate: gate, Dial: dialer.Dial, Metrics: metrics}
		}
		l := &readerListener{cfg: lc}
		if lc.TLS != config.TLSNone {
			if served == nil {
				var err error
				if served, err = certs.Load(cfg, spoolDir, logger); err != nil {
					return nil, err
				}
			}
			l.tls = certs.NewSwappable(certs.ListenerConfig(lc, served))
		}
		f := relay.Frontend{Listener: lc, MaxAuthFailures: cfg.Server.MaxAuthFailures, Backend: backend, Logger: logger}
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

// Reload applies a changed [tls] certificate to new sessions; a generated
// self-signed certificate stays, since clients may have pinned it. Users
// and read_mailbox reach new sessions through the gate's own reload.
func (r *readers) Reload(cfg *config.Config) error {
	if cfg.TLS.CertFile == "" {
		return nil
	}
	served, err := certs.Load(cfg, r.spoolDir, r.log)
	if err != nil {
		return err
	}
	for _, l := range r.listeners {
		if l.tls != nil {
			l.tls.Store(certs.ListenerConfig(l.cfg, served))
		}
	}
	return nil
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
