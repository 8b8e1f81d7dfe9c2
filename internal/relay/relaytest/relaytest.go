// Package relaytest fakes what the IMAP and POP3 front ends depend on:
// the local password check and an Exchange that echoes, for their unit
// tests and fuzz targets. Tests against a real server use Dovecot.
package relaytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/relay"
)

// Upstream is a scripted Exchange: Dial fails as Fail says, or returns a
// connection past login whose far end echoes every byte back.
type Upstream struct {
	Capabilities []string // returned by a successful Dial
	Fail         error    // when set, Dial returns it

	dials   atomic.Int32
	mu      sync.Mutex
	mailbox string // of the last Dial
	wg      sync.WaitGroup
}

// Backend returns the relay.Backend the front end under test uses: the
// real gate and this upstream.
func (u *Upstream) Backend(gate *clients.Gate, m *relay.Metrics) *relay.Backend {
	return &relay.Backend{Gate: gate, Dial: u.dial, Metrics: m}
}

// Dials is how many upstream logins were tried.
func (u *Upstream) Dials() int { return int(u.dials.Load()) }

// Mailbox is the mailbox of the last upstream login.
func (u *Upstream) Mailbox() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.mailbox
}

// Wait waits for the echo goroutines to end (their connections closed).
func (u *Upstream) Wait() { u.wg.Wait() }

func (u *Upstream) dial(_ context.Context, protocol, mailbox string) (net.Conn, []string, error) {
	u.dials.Add(1)
	u.mu.Lock()
	u.mailbox = mailbox
	u.mu.Unlock()
	if u.Fail != nil {
		return nil, nil, u.Fail
	}
	gateway, exchange := net.Pipe()
	u.wg.Go(func() {
		defer exchange.Close()
		io.Copy(exchange, exchange)
	})
	return gateway, u.Capabilities, nil
}

// Refused is a Dial error as Exchange's refusal of the mailbox looks.
func Refused() error {
	return fmt.Errorf("%w: the mailbox is not granted; run Add-MailboxPermission -Identity helpdesk@example.com -User <service principal id> -AccessRights FullAccess", relay.ErrUpstreamRefused)
}

// TLS returns a server configuration with a fresh self-signed certificate
// for 127.0.0.1 and a client configuration that trusts it.
func TLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

// CertificatePEM is the certificate of a configuration from TLS, as PEM:
// for the SSL_CERT_FILE of a gateway running as a separate process.
func CertificatePEM(server *tls.Config) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificates[0].Certificate[0]})
}
