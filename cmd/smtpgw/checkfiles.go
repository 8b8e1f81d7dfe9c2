package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/smtpgw/smtpgw/internal/certs"
	"github.com/smtpgw/smtpgw/internal/config"
)

// checkListeners finds what would stop serve from listening: an address
// that does not resolve, a certificate that does not load or match its
// key. It also reports the certificate's expiry and an ECDSA certificate
// offered to clients old enough to know only RSA.
func checkListeners(cfg *config.Config, f *findings) {
	legacyTLS := false
	anyTLS := false
	for i, l := range cfg.Listeners {
		if _, err := net.ResolveTCPAddr("tcp", l.Address); err != nil {
			f.fail("listener[%d].address: %v", i, err)
		}
		if l.TLS == config.TLSNone {
			continue
		}
		anyTLS = true
		legacyTLS = legacyTLS || l.MinVersion < tls.VersionTLS12
	}
	if !anyTLS {
		return
	}
	if cfg.TLS.CertFile == "" {
		f.info("TLS: a self-signed certificate, made once and kept in the spool (set [tls] cert_file and key_file for one clients can verify)")
		fingerprints, err := certs.SelfSignedFingerprints(cfg.Queue.Dir)
		if err != nil {
			f.fail("TLS: the self-signed certificate in the spool: %v", err)
		}
		for _, fp := range fingerprints {
			f.info("TLS: self-signed %s (SHA-256), for clients that pin it", fp)
		}
		return
	}
	pair, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		f.fail("tls.cert_file and tls.key_file: %v", err)
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		f.fail("tls.cert_file: %v", err)
		return
	}
	reportExpiry(f, "the TLS certificate "+cfg.TLS.CertFile, leaf.NotAfter, certificateExpiryWarning)
	if _, isECDSA := leaf.PublicKey.(*ecdsa.PublicKey); isECDSA && legacyTLS {
		f.warn("tls.cert_file is an ECDSA certificate, but a listener accepts TLS below 1.2: printers that old usually speak RSA only and will fail the handshake; use an RSA certificate")
	}
}

// checkSecretFiles looks at the files holding secrets: a secret file that
// is empty cannot work, and one that other users can read is a leak
// waiting to happen. It reports the client secret's expiry when the
// admin gave it.
func checkSecretFiles(cfg *config.Config, f *findings) {
	type secretFile struct{ key, path string }
	var files []secretFile
	if g := cfg.Graph; g != nil {
		files = append(files,
			secretFile{"graph.client_secret_file", g.ClientSecretFile},
			secretFile{"graph.certificate_file", g.CertificateFile},
			secretFile{"graph.certificate_password_file", g.CertificatePasswordFile})
		if expires := g.ClientSecretExpires; !expires.IsZero() {
			reportExpiry(f, "the client secret (graph.client_secret_expires)", expires.Time, secretExpiryWarning)
		}
	}
	files = append(files, secretFile{"tls.key_file", cfg.TLS.KeyFile})
	for _, sf := range files {
		if sf.path == "" {
			continue
		}
		data, err := os.ReadFile(sf.path)
		if err != nil {
			f.fail("%s: %v", sf.key, err)
			continue
		}
		if strings.TrimSpace(string(data)) == "" && sf.key != "graph.certificate_password_file" {
			f.fail("%s: %s is empty", sf.key, sf.path)
		}
		if msg := exposure(sf.path); msg != "" {
			f.warn("%s: %s", sf.key, msg)
		}
	}
}

// exposure says how a secret file is readable beyond its owner, or "".
// Windows permissions are ACLs that the mode bits do not show.
func exposure(path string) string {
	if runtime.GOOS == "windows" {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o044 == 0 {
		return ""
	}
	return fmt.Sprintf("%s is readable by group or others (mode %04o): chmod 600 %s", path, fi.Mode().Perm(), path)
}
