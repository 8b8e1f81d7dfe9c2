package smtpserver

import (
	"crypto/tls"
	"crypto/x509"
	"math"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/config"
)

func TestReloadIdentities(t *testing.T) {
	cfg := testConfig(t)
	ts := startServer(t, cfg)
	before := ts.dial(t, startTLSListener)
	if err := before.Auth(sasl.NewPlainClient("", scannerUser, scannerPassword)); err != nil {
		t.Fatal(err)
	}

	hash, err := bcrypt.GenerateFromPassword([]byte("new pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	next := testConfig(t)
	next.Users = []config.User{{Username: "mfp-new", PasswordHash: string(hash), Mailbox: "new@contoso.com"}}
	if err := ts.reload(next); err != nil {
		t.Fatal(err)
	}

	// The session authenticated before the reload keeps its identity.
	status, err := send(before, scannerMailbox, []string{"rcpt@example.com"}, "Subject: x\r\n\r\nbody\r\n")
	if err != nil {
		t.Fatalf("session from before the reload: %v", err)
	}
	if env, _ := ts.spooled(t, queueID(t, status)); env.Mailbox != scannerMailbox {
		t.Errorf("mailbox %q, want %q", env.Mailbox, scannerMailbox)
	}
	// New AUTHs see the new users only.
	if err := ts.dial(t, startTLSListener).Auth(sasl.NewPlainClient("", "mfp-new", "new pw")); err != nil {
		t.Errorf("new user after reload: %v", err)
	}
	err = ts.dial(t, startTLSListener).Auth(sasl.NewPlainClient("", scannerUser, scannerPassword))
	wantSMTPError(t, err, 535, smtp.EnhancedCode{5, 7, 8})
}

func TestReloadKeepsSelfSignedCertificate(t *testing.T) {
	ts := startServer(t, testConfig(t))
	first := peerCertificate(t, ts)
	if err := ts.reload(testConfig(t)); err != nil {
		t.Fatal(err)
	}
	if second := peerCertificate(t, ts); !first.Equal(second) {
		t.Error("reload replaced the generated certificate; clients that pinned it would break")
	}
}

// peerCertificate is the certificate the implicit TLS listener presents.
func peerCertificate(t *testing.T, ts *testServer) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.addrs[implicitListener], clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestTLSCertificateExpiryMetric: the gauge tells how long the served
// certificate has left, so an alert can fire before printers fail TLS.
func TestTLSCertificateExpiryMetric(t *testing.T) {
	ts := startServer(t, testConfig(t))
	served := peerCertificate(t, ts)
	got := testutil.ToFloat64(ts.metrics.certExpiry)
	want := time.Until(served.NotAfter).Seconds()
	if math.Abs(got-want) > 60 {
		t.Errorf("smtpgw_tls_certificate_expiry_seconds = %.0f, want about %.0f", got, want)
	}
}
