package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// legacyConfig has an implicit-TLS listener that accepts TLS 1.0, so
// both an ECDSA and an RSA certificate are needed.
func legacyConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`
[server]
hostname = "smtpgw.test"
[[listener]]
address = "127.0.0.1:0"
tls = "implicit"
min_tls_version = "1.0"
[outbox]
dir = "unused"
[[network]]
cidrs = ["127.0.0.1"]
mailbox = "scanner@contoso.com"
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSelfSignedKept: the self-signed certificates are made once, kept
// beside the spool with mode 0600, and loaded again after a restart.
func TestSelfSignedKept(t *testing.T) {
	dir := t.TempDir()
	cfg := legacyConfig(t)
	load := func() string {
		logs := &testlog.Buffer{}
		certs, err := Load(cfg, dir, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 2 {
			t.Fatalf("%d certificates, want ECDSA and RSA", len(certs))
		}
		fp := Fingerprint(certs[0].Certificate[0])
		if !strings.Contains(logs.String(), "sha256="+fp) {
			t.Errorf("fingerprint %s not logged:\n%s", fp, logs)
		}
		return fp
	}
	first := load()
	if again := load(); again != first {
		t.Errorf("certificate changed across a restart: %s, then %s", first, again)
	}
	for _, kind := range []string{keyECDSA, keyRSA} {
		info, err := os.Stat(filepath.Join(dir, "selfsigned-"+kind+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s certificate file mode %v, want 0600", kind, info.Mode().Perm())
		}
	}
	fps, err := SelfSignedFingerprints(dir)
	if err != nil || len(fps) != 2 || fps[0] != keyECDSA+" "+first {
		t.Errorf("SelfSignedFingerprints = %q, %v; want ecdsa %s first", fps, err, first)
	}
}

// TestSwappable: a handshake gets the configuration stored last.
func TestSwappable(t *testing.T) {
	first, second := &tls.Config{ServerName: "first"}, &tls.Config{ServerName: "second"}
	s := NewSwappable(first)
	served := s.Config()
	if c, _ := served.GetConfigForClient(nil); c != first {
		t.Fatalf("got %v, want the first configuration", c)
	}
	s.Store(second)
	if c, _ := served.GetConfigForClient(nil); c != second {
		t.Fatalf("got %v, want the stored configuration", c)
	}
}

// TestServedReload: the SMTP and IMAP listeners serve the same
// certificates, read once at start and once per reload: a renewed
// cert_file reaches both, removing cert_file takes both back to the
// self-signed certificate (IMAP once kept the old file's), and a file that
// does not load changes nothing.
func TestServedReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert := func() []byte {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := selfSigned("smtpgw.test", nil, key)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
			t.Fatal(err)
		}
		return cert.Certificate[0]
	}
	listeners := []config.Listener{
		{Address: "127.0.0.1:0", TLS: config.TLSStartTLS},
		{Address: "127.0.0.1:0", TLS: config.TLSImplicit, Protocol: config.ProtocolIMAP},
		{Address: "127.0.0.1:0", TLS: config.TLSNone, Protocol: config.ProtocolPOP3},
	}
	withFiles := &config.Config{Server: config.Server{Hostname: "smtpgw.test"}, Listeners: listeners, TLS: config.TLS{CertFile: certFile, KeyFile: keyFile}}
	withoutFiles := &config.Config{Server: withFiles.Server, Listeners: listeners}

	first := writeCert()
	logs := &testlog.Buffer{}
	served, err := NewServed(withFiles, dir, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	smtp, imap := served.Listener(listeners[0]), served.Listener(listeners[1])
	if served.Listener(listeners[2]) != nil {
		t.Error("a listener without TLS got a TLS configuration")
	}
	serving := func(s *Swappable) []byte {
		c, _ := s.Config().GetConfigForClient(nil)
		return c.Certificates[0].Certificate[0]
	}
	check := func(when string, want []byte) {
		t.Helper()
		for name, s := range map[string]*Swappable{"smtp": smtp, "imap": imap} {
			if got := serving(s); !bytes.Equal(got, want) {
				t.Errorf("%s: %s serves %s, want %s", when, name, Fingerprint(got), Fingerprint(want))
			}
		}
	}
	check("at start", first)
	leaf, _ := x509.ParseCertificate(first)
	if !served.NotAfter().Equal(leaf.NotAfter) {
		t.Errorf("NotAfter %v, want %v", served.NotAfter(), leaf.NotAfter)
	}

	renewed := writeCert()
	if err := served.Reload(withFiles); err != nil {
		t.Fatal(err)
	}
	check("renewed", renewed)

	if err := served.Reload(withoutFiles); err != nil {
		t.Fatal(err)
	}
	selfSignedDER := serving(smtp)
	if bytes.Equal(selfSignedDER, renewed) {
		t.Fatal("cert_file removed: the old file's certificate is still served")
	}
	check("cert_file removed", selfSignedDER)
	if n := strings.Count(logs.String(), "self-signed"); n != 1 {
		t.Errorf("self-signed certificate logged %d times, want once:\n%s", n, logs)
	}
	if err := served.Reload(withoutFiles); err != nil {
		t.Fatal(err)
	}
	check("reloaded without cert_file", selfSignedDER)

	broken := &config.Config{Server: withFiles.Server, Listeners: listeners, TLS: config.TLS{CertFile: filepath.Join(dir, "missing.pem"), KeyFile: keyFile}}
	if err := served.Reload(broken); err == nil {
		t.Error("a missing cert_file was accepted")
	}
	check("after a refused reload", selfSignedDER)
}
