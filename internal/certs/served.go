package certs

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
)

// Served is the certificates every TLS listener serves, SMTP, IMAP and
// POP3 alike: read once at start and once per reload, so that all of them
// follow the same rules and a self-signed certificate is logged once.
// Each listener gets a Swappable of its own, since its TLS versions are
// its own, and Reload swaps them all.
type Served struct {
	spoolDir string
	log      *slog.Logger

	// mu guards the fields below: a metrics scrape reads NotAfter while
	// a reload may run.
	mu        sync.Mutex
	certs     []tls.Certificate // nil when no listener serves TLS
	files     config.TLS        // where certs came from
	listeners []servedListener
}

type servedListener struct {
	cfg config.Listener
	tls *Swappable
}

// NewServed loads the certificates of cfg's TLS listeners (see Load),
// keeping self-signed ones in spoolDir; none when no listener serves TLS.
func NewServed(cfg *config.Config, spoolDir string, logger *slog.Logger) (*Served, error) {
	s := &Served{spoolDir: spoolDir, log: logger, files: cfg.TLS}
	if !slices.ContainsFunc(cfg.Listeners, servesTLS) {
		return s, nil
	}
	var err error
	if s.certs, err = Load(cfg, spoolDir, logger); err != nil {
		return nil, err
	}
	return s, nil
}

// Listener returns the TLS configuration listener l serves, which Reload
// keeps current; nil when l serves no TLS.
func (s *Served) Listener(l config.Listener) *Swappable {
	if !servesTLS(l) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := NewSwappable(ListenerConfig(l, s.certs))
	s.listeners = append(s.listeners, servedListener{cfg: l, tls: sw})
	return sw
}

// Reload applies the [tls] certificate of cfg, read again from its files
// so that a renewed one applies, to the new connections of every
// listener; those already open keep the certificate they negotiated. A
// generated self-signed certificate stays, since clients may have pinned
// it; removing cert_file goes back to it. Listeners keep their start-up
// addresses and TLS versions.
//
// When the certificate cannot be loaded, nothing changes and the error
// says why. Reload must not run concurrently with itself.
func (s *Served) Reload(cfg *config.Config) error {
	s.mu.Lock()
	served, files := s.certs, s.files
	s.mu.Unlock()
	if served != nil && (cfg.TLS.CertFile != "" || files.CertFile != "") {
		var err error
		if served, err = Load(cfg, s.spoolDir, s.log); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.tls.Store(ListenerConfig(l.cfg, served))
	}
	s.certs, s.files = served, cfg.TLS
	return nil
}

// NotAfter is when the first of the served certificates expires; zero
// when there is none.
func (s *Served) NotAfter() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var earliest time.Time
	for _, cert := range s.certs {
		leaf := cert.Leaf
		if leaf == nil && len(cert.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		}
		if leaf != nil && (earliest.IsZero() || leaf.NotAfter.Before(earliest)) {
			earliest = leaf.NotAfter
		}
	}
	return earliest
}
