package smtpserver

import (
	"github.com/smtpgw/smtpgw/internal/certs"
	"github.com/smtpgw/smtpgw/internal/config"
)

// Reload applies the TLS certificate of cfg (read again from its files, so
// a renewed one applies) to new connections; those already open keep the
// certificate they negotiated with. Identities and limits are the gate's:
// reload it first. Listener addresses, TLS modes and the [server] settings
// keep their start-up values.
//
// When the certificate cannot be loaded, nothing changes and the error
// says why. Reload must not run concurrently with itself.
func (s *Server) Reload(cfg *config.Config) error {
	// A generated self-signed certificate stays: clients may have pinned it.
	served := s.certs
	if s.servesTLS() && (cfg.TLS.CertFile != "" || s.tlsFiles.CertFile != "") {
		var err error
		if served, err = certs.Load(cfg, spoolDir(s.spool), s.log); err != nil {
			return err
		}
	}
	for _, l := range s.listeners {
		if l.tls != nil {
			l.tls.Store(certs.ListenerConfig(l.cfg, served))
		}
	}
	s.certs, s.tlsFiles = served, cfg.TLS
	s.metrics.certExpiry.set(served)
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
