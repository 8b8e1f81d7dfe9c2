package dovecottest

import (
	"bytes"
	"errors"
	"io"
	"net"
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

	mu           sync.Mutex
	server       *smtp.Server
	transactions []Transaction
	open, peak   int // connections open now and at most
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

type sinkBackend struct{ k *Sink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	b.k.mu.Lock()
	b.k.open++
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
	s.tx.To = append(s.tx.To, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
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
