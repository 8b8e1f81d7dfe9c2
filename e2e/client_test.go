package e2e

import (
	"crypto/tls"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// submission is one message as a client sends it.
type submission struct {
	From     string
	To       []string
	Body     string
	StartTLS bool
	Username string // AUTH PLAIN when set
	Password string
}

var queueIDRE = regexp.MustCompile(`queued as (\S+)`)

// submit sends s to addr and returns the queue ID from the 250 reply.
func submit(addr string, s submission) (string, error) {
	dial := smtp.Dial
	if s.StartTLS {
		dial = func(addr string) (*smtp.Client, error) {
			return smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
		}
	}
	c, err := dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if s.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.Username, s.Password)); err != nil {
			return "", err
		}
	}
	return sendOn(c, s)
}

// sendOn runs one mail transaction on an open connection.
func sendOn(c *smtp.Client, s submission) (string, error) {
	w, err := openData(c, s.From, s.To...)
	if err != nil {
		return "", err
	}
	crlf := strings.ReplaceAll(strings.ReplaceAll(s.Body, "\r\n", "\n"), "\n", "\r\n")
	if _, err := w.Write([]byte(crlf)); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	m := queueIDRE.FindStringSubmatch(resp.StatusText)
	if m == nil {
		return "", fmt.Errorf("no queue ID in %q", resp.StatusText)
	}
	return m[1], nil
}

// openData sends MAIL FROM from and RCPT TO each of to on c, then DATA,
// and returns the writer for the message.
func openData(c *smtp.Client, from string, to ...string) (*smtp.DataCommand, error) {
	if err := c.Mail(from, nil); err != nil {
		return nil, err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return nil, err
		}
	}
	return c.Data()
}

func mustSubmit(t testing.TB, addr string, s submission) string {
	t.Helper()
	id, err := submit(addr, s)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return id
}
