package smtpserver

import (
	"crypto/tls"

	"github.com/smtpgw/smtpgw/internal/config"
)

// Reload applies the parts of cfg that take effect without a restart: the
// users and networks with their mailboxes and allowed senders, the TLS
// certificate (read again from its files, so a renewed one applies),
// max_connections, and [limits] except idle_timeout (the counts so far
// stay). Sessions already open keep the identity they
// authenticated as and the certificate they negotiated with; new
// connections and new AUTHs see the new configuration. Listener addresses,
// TLS modes and the other [server] settings keep their start-up values.
//
// When any part cannot be prepared, nothing changes and the error says why.
// Reload must not run concurrently with itself.
func (s *Server) Reload(cfg *config.Config) error {
	ids, err := newIdentities(cfg)
	if err != nil {
		return err
	}
	// A generated self-signed certificate stays: clients may have pinned it.
	certs := s.certs
	if s.servesTLS() && (cfg.TLS.CertFile != "" || s.tlsFiles.CertFile != "") {
		if certs, err = certificates(cfg, spoolDir(s.spool), s.log); err != nil {
			return err
		}
	}
	s.ids.Store(ids)
	s.settings.Store(&cfg.Limits)
	for _, l := range s.listeners {
		if l.tls != nil {
			l.liveTLS.Store(listenerTLSConfig(l.cfg, certs))
		}
	}
	s.certs, s.tlsFiles = certs, cfg.TLS
	s.metrics.certExpiry.set(certs)
	s.conns.setMax(cfg.Server.MaxConnections)
	return nil
}

// servesTLS reports whether any listener speaks TLS.
func (s *Server) servesTLS() bool {
	for _, l := range s.listeners {
		if l.tls != nil {
			return true
		}
	}
	return false
}

// swappableTLS returns the tls.Config a listener serves with: each
// handshake gets the configuration stored last, so that Reload can change
// the certificate for new connections.
func (l *listener) swappableTLS(initial *tls.Config) *tls.Config {
	l.liveTLS.Store(initial)
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return l.liveTLS.Load(), nil
	}}
}

// setMax changes max_connections; connections already open stay.
func (t *connTracker) setMax(max int) {
	t.mu.Lock()
	t.max = max
	t.mu.Unlock()
}
