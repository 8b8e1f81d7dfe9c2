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
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/relay"
)

// Upstream is a scripted Exchange: Dial fails as Fail says, or returns a
// connection past login whose far end echoes every byte back.
type Upstream struct {
	Users        map[string]string // user name → password
	Mailbox      string            // every user's read_mailbox
	Capabilities []string          // returned by a successful Dial
	Fail         error             // when set, Dial returns it

	logins atomic.Int32 // password checks
	dials  atomic.Int32
	wg     sync.WaitGroup
}

// Backend returns the relay.Backend the front end under test uses.
func (u *Upstream) Backend(m *relay.Metrics) *relay.Backend {
	return &relay.Backend{Login: u.login, Dial: u.dial, Metrics: m}
}

// Logins is how many passwords were checked; Dials how many upstream
// logins were tried.
func (u *Upstream) Logins() int { return int(u.logins.Load()) }
func (u *Upstream) Dials() int  { return int(u.dials.Load()) }

// Wait waits for the echo goroutines to end (their connections closed).
func (u *Upstream) Wait() { u.wg.Wait() }

// ErrWrongPassword is the fake's answer to a wrong password.
var ErrWrongPassword = errors.New("wrong password")

func (u *Upstream) login(_ context.Context, _ net.Conn, user, pass string) (string, error) {
	u.logins.Add(1)
	if want, ok := u.Users[user]; !ok || want != pass {
		return "", ErrWrongPassword
	}
	return u.Mailbox, nil
}

func (u *Upstream) dial(_ context.Context, protocol, mailbox string) (net.Conn, []string, error) {
	u.dials.Add(1)
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
