package certs

import (
	"crypto/tls"
	"sync/atomic"
)

// Swappable hands every TLS handshake the configuration stored last, so
// that a reload can change the certificate for new connections while those
// already open keep the one they negotiated.
type Swappable struct {
	live atomic.Pointer[tls.Config]
}

// NewSwappable starts serving initial.
func NewSwappable(initial *tls.Config) *Swappable {
	s := &Swappable{}
	s.live.Store(initial)
	return s
}

// Store makes c the configuration of the handshakes from now on.
func (s *Swappable) Store(c *tls.Config) { s.live.Store(c) }

// Config is what a listener or tls.Server is given: it asks for the live
// configuration at each handshake.
func (s *Swappable) Config() *tls.Config {
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return s.live.Load(), nil
	}}
}
