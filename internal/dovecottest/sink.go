package dovecottest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Transaction is one message the sink accepted: its envelope and its bytes
// as Dovecot's submission service relayed them.
type Transaction struct {
	From string
	To   []string
	Data []byte
}

// Sink is the SMTP server the submission service relays to: it accepts
// everything and keeps each transaction. It can be taken down and brought
// back on the same address.
type Sink struct {
	Address string // 127.0.0.1:PORT

	mu            sync.Mutex
	server        *smtp.Server
	transactions  []Transaction
	open, peak    int             // connections open now and at most
	sessions      int             // connections ever accepted
	refused       map[string]bool // recipients answered 550 5.1.1
	maxRecipients int             // per transaction; beyond, 452 4.5.3; 0: no limit
	datas         int             // DATA commands seen
	failDataAt    int             // the DATA answered 451 4.3.0; 0: none
}

// FailNthData makes the n-th DATA from now fail with 451 4.3.0, as a
// relay does that has a passing problem.
func (k *Sink) FailNthData(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failDataAt = k.datas + n
}

// Refuse makes the sink refuse rcpt for good (550 5.1.1), as Exchange
// refuses an unknown recipient.
func (k *Sink) Refuse(rcpt string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refused == nil {
		k.refused = map[string]bool{}
	}
	k.refused[strings.ToLower(rcpt)] = true
}

// LimitRecipients makes the sink take at most n recipients per
// transaction and answer 452 4.5.3 to the next, as Exchange does past its
// recipient limit.
func (k *Sink) LimitRecipients(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.maxRecipients = n
}

func startSink(t testing.TB) *Sink {
	k := &Sink{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.Address = l.Addr().String()
	k.serve(l)
	t.Cleanup(k.Down)
	return k
}

func (k *Sink) serve(l net.Listener) {
	s := smtp.NewServer(sinkBackend{k})
	s.Domain = "sink.localhost"
	s.MaxMessageBytes = 100 << 20
	s.MaxRecipients = 1000
	s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
	k.mu.Lock()
	k.server = s
	k.mu.Unlock()
	go s.Serve(l)
}

// Down closes the sink's listener and connections: the relay is
// unreachable until Up.
func (k *Sink) Down() {
	k.mu.Lock()
	s := k.server
	k.server = nil
	k.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// Up listens again on the sink's address.
func (k *Sink) Up(t testing.TB) {
	t.Helper()
	var l net.Listener
	var err error
	// The port was just ours; give the kernel a moment to free it.
	for range 50 {
		if l, err = net.Listen("tcp", k.Address); err == nil {
			k.serve(l)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("dovecottest: sink cannot listen on %s again: %v", k.Address, err)
}

// Transactions returns what the sink accepted so far, in order.
func (k *Sink) Transactions() []Transaction {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Transaction(nil), k.transactions...)
}

// WaitTransactions waits until at least n transactions arrived and returns
// them; the test fails after timeout.
func (k *Sink) WaitTransactions(t testing.TB, n int, timeout time.Duration) []Transaction {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := k.Transactions()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecottest: %d transaction(s) in the sink after %s, want %d", len(got), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// PeakConnections is the most relay connections ever open at once: Dovecot
// opens one per submission session.
func (k *Sink) PeakConnections() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.peak
}

// Sessions is how many relay connections the sink accepted in all: one
// per submission session Dovecot relays for.
func (k *Sink) Sessions() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sessions
}

type sinkBackend struct{ k *Sink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	b.k.mu.Lock()
	b.k.open++
	b.k.sessions++
	b.k.peak = max(b.k.peak, b.k.open)
	b.k.mu.Unlock()
	return &sinkSession{k: b.k}, nil
}

type sinkSession struct {
	k  *Sink
	tx Transaction
}

func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.tx = Transaction{From: from}
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.k.mu.Lock()
	refused, limit := s.k.refused[strings.ToLower(to)], s.k.maxRecipients
	s.k.mu.Unlock()
	switch {
	case refused:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Recipient address rejected: unknown user"}
	case limit > 0 && len(s.tx.To) >= limit:
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients"}
	}
	s.tx.To = append(s.tx.To, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	s.k.mu.Lock()
	s.k.datas++
	fail := s.k.datas == s.k.failDataAt
	s.k.mu.Unlock()
	if fail {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure"}
	}
	if len(s.tx.To) == 0 {
		return errors.New("no recipients")
	}
	s.tx.Data = buf.Bytes()
	s.k.mu.Lock()
	s.k.transactions = append(s.k.transactions, s.tx)
	s.k.mu.Unlock()
	s.tx = Transaction{}
	return nil
}

func (s *sinkSession) Reset() { s.tx = Transaction{} }

func (s *sinkSession) Logout() error {
	s.k.mu.Lock()
	s.k.open--
	s.k.mu.Unlock()
	return nil
}
