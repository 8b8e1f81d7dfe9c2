package certs

import (
	"crypto/tls"
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
