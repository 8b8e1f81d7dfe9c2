package smtpserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
)

// minVersion is the listener's lowest TLS version; TLS 1.2 when unset.
func minVersion(l config.Listener) uint16 {
	if l.MinVersion == 0 {
		return tls.VersionTLS12
	}
	return l.MinVersion
}

// legacyCipherSuites are offered on listeners that accept TLS 1.0 or 1.1.
// Go's default list leaves out the suites with RSA key exchange (no forward
// secrecy), but many printers and scanners from before 2015 implement
// nothing else: with TLS 1.0 they offer only TLS_RSA_WITH_AES_*_CBC_SHA.
// Setting CipherSuites explicitly is the way to re-enable them, so the list
// is Go's secure suites plus these two; Go still prefers the forward-secret
// ones when the client has them. 3DES and RC4 stay off.
func legacyCipherSuites() []uint16 {
	var ids []uint16
	for _, cs := range tls.CipherSuites() {
		ids = append(ids, cs.ID)
	}
	return append(ids, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA)
}

func listenerTLSConfig(l config.Listener, certs []tls.Certificate) *tls.Config {
	c := &tls.Config{Certificates: certs, MinVersion: minVersion(l)}
	if c.MinVersion < tls.VersionTLS12 {
		c.CipherSuites = legacyCipherSuites()
	}
	return c
}

// certificates loads [tls] cert_file/key_file or, when both are empty,
// generates a self-signed certificate for the host name and the listener
// addresses. The generated set holds an ECDSA certificate and, when a
// listener accepts TLS below 1.2, an RSA one too: the RSA key exchange
// suites those clients need require an RSA key.
func certificates(cfg *config.Config, logger *slog.Logger) ([]tls.Certificate, error) {
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		return []tls.Certificate{cert}, nil
	}
	var ips []net.IP
	legacy := false
	for _, l := range cfg.Listeners {
		if l.TLS == config.TLSNone || l.TLS == "" {
			continue
		}
		legacy = legacy || minVersion(l) < tls.VersionTLS12
		host, _, err := net.SplitHostPort(l.Address)
		if ip, perr := netip.ParseAddr(host); err == nil && perr == nil && !ip.IsUnspecified() {
			ips = append(ips, ip.AsSlice())
		}
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls: generate key: %w", err)
	}
	keys := []crypto.Signer{ecKey}
	if legacy {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("tls: generate key: %w", err)
		}
		keys = append(keys, rsaKey)
	}
	var certs []tls.Certificate
	for _, key := range keys {
		cert, err := selfSigned(cfg.Server.Hostname, ips, key)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	logger.Warn("no [tls] certificate configured: using a self-signed certificate generated at start; clients that verify certificates will refuse it",
		"hostname", cfg.Server.Hostname)
	return certs, nil
}

func selfSigned(hostname string, ips []net.IP, key crypto.Signer) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %w", err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname},
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if hostname != "" {
		template.DNSNames = []string{hostname}
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		// RSA key exchange encrypts the premaster secret to the key.
		template.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
