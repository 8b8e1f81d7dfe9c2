package smtpserver

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// TestSelfSignedKept: the self-signed certificate is made once, kept beside
// the spool with mode 0600, and served again after a restart.
func TestSelfSignedKept(t *testing.T) {
	dir := t.TempDir()
	served := func() string {
		spool, err := queue.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		logs := &testlog.Buffer{}
		srv, err := New(testConfig(t), spool, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		}()
		conn, err := tls.Dial("tcp", srv.Addrs()[implicitListener].String(), clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fp := Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
		if !strings.Contains(logs.String(), "sha256="+fp) {
			t.Errorf("fingerprint %s not logged:\n%s", fp, logs)
		}
		return fp
	}
	first := served()
	if again := served(); again != first {
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
