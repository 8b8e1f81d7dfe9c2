// Package certs provides the TLS certificates every listener serves: the
// admin's [tls] files, or self-signed ones kept beside the spool so that
// devices that pin them keep trusting the gateway across restarts. Served
// reads them once for every listener, and its Reload changes them for new
// connections through each listener's Swappable configuration.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// ListenerConfig is the TLS configuration listener l serves certs with.
func ListenerConfig(l config.Listener, certs []tls.Certificate) *tls.Config {
	c := &tls.Config{Certificates: certs, MinVersion: minVersion(l)}
	if c.MinVersion < tls.VersionTLS12 {
		c.CipherSuites = legacyCipherSuites()
	}
	return c
}

// Load loads [tls] cert_file/key_file or, when both are empty,
// the self-signed certificates kept beside the spool (selfSignedFiles),
// generating them on first use. The set holds an ECDSA certificate and,
// when a listener accepts TLS below 1.2, an RSA one too: the RSA key
// exchange suites those clients need require an RSA key. Keeping them
// lets devices that pin a certificate keep trusting the gateway across
// restarts; with spoolDir empty (tests), they live in memory only.
func Load(cfg *config.Config, spoolDir string, logger *slog.Logger) ([]tls.Certificate, error) {
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		return []tls.Certificate{cert}, nil
	}
	// Each address once, however many TLS listeners share it.
	var addrs []netip.Addr
	legacy := false
	for _, l := range cfg.Listeners {
		if !servesTLS(l) {
			continue
		}
		legacy = legacy || minVersion(l) < tls.VersionTLS12
		host, _, err := net.SplitHostPort(l.Address)
		if ip, perr := netip.ParseAddr(host); err == nil && perr == nil && !ip.IsUnspecified() && !slices.Contains(addrs, ip) {
			addrs = append(addrs, ip)
		}
	}
	var ips []net.IP
	for _, ip := range addrs {
		ips = append(ips, ip.AsSlice())
	}
	kinds := []string{keyECDSA}
	if legacy {
		kinds = append(kinds, keyRSA)
	}
	var certs []tls.Certificate
	for _, kind := range kinds {
		path := ""
		if spoolDir != "" {
			path = selfSignedFile(spoolDir, kind)
		}
		cert, err := keptSelfSigned(path, kind, cfg.Server.Hostname, ips)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
		logger.Warn("no [tls] certificate configured: using a self-signed certificate; clients that verify certificates refuse it unless they trust what `smtpgw tls-certificate` prints, devices may pin it",
			"hostname", cfg.Server.Hostname, "key", kind, "sha256", Fingerprint(cert.Certificate[0]), "file", path)
	}
	return certs, nil
}

// servesTLS reports whether listener l offers TLS, and so a certificate.
func servesTLS(l config.Listener) bool {
	return l.TLS == config.TLSStartTLS || l.TLS == config.TLSImplicit
}

// CertificatePEM returns, in PEM, the certificates the TLS listeners of cfg
// serve, for clients to trust: the chain of [tls] cert_file, or the
// self-signed certificates kept in the spool, made and kept there first
// when there are none yet (as serve would). It never returns a key.
func CertificatePEM(cfg *config.Config) ([]byte, error) {
	if !slices.ContainsFunc(cfg.Listeners, servesTLS) {
		return nil, errors.New("no [[listener]] has tls = \"starttls\" or \"implicit\": the gateway serves no certificate")
	}
	if cfg.TLS.CertFile == "" && cfg.TLS.KeyFile == "" {
		if err := os.MkdirAll(cfg.Queue.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	certs, err := Load(cfg, cfg.Queue.Dir, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, cert := range certs {
		for _, der := range cert.Certificate {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	return out, nil
}

// Key types of the self-signed certificates.
const (
	keyECDSA = "ecdsa"
	keyRSA   = "rsa"
)

// selfSignedLifetime is long, since devices that pin the certificate must
// be told again when it changes.
const selfSignedLifetime = 5 * 365 * 24 * time.Hour

// selfSignedFile is where the self-signed certificate and key of one key
// type are kept: certificate and PKCS #8 key in one PEM file, mode 0600.
func selfSignedFile(spoolDir, kind string) string {
	return filepath.Join(spoolDir, "selfsigned-"+kind+".pem")
}

// SelfSignedFingerprints returns the SHA-256 fingerprints of the
// self-signed certificates kept in the spool at spoolDir, for `check` to
// show; none when the gateway has not made one (or uses [tls] files).
func SelfSignedFingerprints(spoolDir string) ([]string, error) {
	var out []string
	for _, kind := range []string{keyECDSA, keyRSA} {
		cert, err := loadSelfSigned(selfSignedFile(spoolDir, kind))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, kind+" "+Fingerprint(cert.Certificate[0]))
	}
	return out, nil
}

// Fingerprint is the SHA-256 of a DER certificate as colon-separated hex,
// the form devices and openssl x509 -fingerprint -sha256 show.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// keptSelfSigned loads the certificate at path when it is still good for
// hostname and a month more, else makes a new one and keeps it there.
func keptSelfSigned(path, kind, hostname string, ips []net.IP) (tls.Certificate, error) {
	if path != "" {
		cert, err := loadSelfSigned(path)
		if err == nil && cert.Leaf.VerifyHostname(hostname) == nil && time.Until(cert.Leaf.NotAfter) > 30*24*time.Hour {
			return cert, nil
		}
	}
	var key crypto.Signer
	var err error
	if kind == keyRSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: generate key: %w", err)
	}
	cert, err := selfSigned(hostname, ips, key)
	if err != nil || path == "" {
		return cert, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %w", err)
	}
	data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: keep the self-signed certificate: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: keep the self-signed certificate: %w", err)
	}
	return cert, nil
}

func loadSelfSigned(path string) (tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(data, data)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %s: %w", path, err)
	}
	return cert, nil
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
		NotAfter:     now.Add(selfSignedLifetime),
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
