package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

const (
	// smtpIdleLimit is how long an idle connection is kept for the next
	// message of its mailbox: Exchange drops idle sessions after a while,
	// and a connection it dropped costs a failed RSET before a new dial.
	smtpIdleLimit = time.Minute
	// smtpDialTimeout bounds the token, connecting, TLS and authentication.
	smtpDialTimeout = 30 * time.Second
)

// TokenSource is a target that hands out access tokens of the app
// credential per scope: *Graph and *ExchangeSMTP.
type TokenSource interface {
	Token(ctx context.Context, scope string) (string, error)
}

// ExchangeSMTP sends each message unchanged through Exchange Online's SMTP
// submission endpoint, as its mailbox, authenticated with XOAUTH2 and an
// app-only token (SMTP.SendAsApp). Connections are kept per mailbox and
// reused with RSET; the engine's mailbox_concurrency bounds how many are
// in use at once, and no more than that are kept idle.
type ExchangeSMTP struct {
	address string // host:port, STARTTLS
	scope   string
	tokens  *Graph // the app credential's tokens
	tls     *tls.Config
	maxIdle int // per mailbox
	metrics *smtpMetrics
	now     func() time.Time // time.Now; tests move it on
	dialer  net.Dialer
	mu      sync.Mutex
	idle    map[string][]*smtpConn // by lower-case mailbox, most recent last
	closing bool
}

// smtpConn is one authenticated session of one mailbox.
type smtpConn struct {
	client    *smtp.Client
	idleSince time.Time
}

// NewExchangeSMTP returns the target for cfg's smtp_address and scope,
// getting tokens from the Graph target's credential. perMailbox is
// mailbox_concurrency.
func NewExchangeSMTP(cfg config.Exchange, tokens *Graph, perMailbox int, opts Options) (*ExchangeSMTP, error) {
	host, _, err := net.SplitHostPort(cfg.SMTPAddress)
	if err != nil {
		return nil, err
	}
	return &ExchangeSMTP{
		address: cfg.SMTPAddress, scope: cfg.Scope, tokens: tokens,
		tls:     &tls.Config{ServerName: host, RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		maxIdle: perMailbox, metrics: newSMTPMetrics(opts.Metrics), now: time.Now,
		idle: map[string][]*smtpConn{},
	}, nil
}

// ReloadCredential re-reads the app credential's files.
func (x *ExchangeSMTP) ReloadCredential() error { return x.tokens.ReloadCredential() }

// Token is the app credential's token for scope, so that the IMAP and
// POP3 front ends reach Exchange with the same cached tokens as sending.
func (x *ExchangeSMTP) Token(ctx context.Context, scope string) (string, error) {
	return x.tokens.Token(ctx, scope)
}

// Apply hands a reloaded [graph] section to the app credential: new
// sessions then log in with its tokens.
func (x *ExchangeSMTP) Apply(cfg *config.Graph) error { return x.tokens.Apply(cfg) }

// Way is Exchange's SMTP at smtp_address.
func (x *ExchangeSMTP) Way() Way { return Way{Via: config.SendViaSMTP, Address: x.address} }

// Close ends every idle connection with QUIT.
func (x *ExchangeSMTP) Close() error {
	x.mu.Lock()
	x.closing = true
	idle := x.idle
	x.idle = map[string][]*smtpConn{}
	x.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			x.quit(c)
		}
	}
	return nil
}

// Send delivers the raw message as env.Mailbox to every envelope
// recipient, the Bcc header removed.
func (x *ExchangeSMTP) Send(ctx context.Context, env *envelope.Envelope, m Message) (Receipt, error) {
	raw, size := m.Raw()
	c, err := x.take(ctx, env.Mailbox)
	if err != nil {
		x.metrics.count(err)
		return Receipt{}, err
	}
	// A cancelled context (shutdown, engine timeout) ends the session at
	// once instead of waiting for go-smtp's command timeout.
	stop := context.AfterFunc(ctx, func() { c.client.Close() })
	receipt, err := x.transactions(c.client, env, raw, size)
	stopped := stop()
	if err != nil && !stopped {
		err = &Error{Kind: KindTransient, Message: "cancelled", Err: ctx.Err(), way: waySMTP}
	}
	x.metrics.count(err)
	var e *Error
	if err == nil || errors.As(err, &e) && e.sessionUsable {
		x.put(env.Mailbox, c)
	} else {
		x.drop(c)
	}
	return receipt, err
}

// transactions sends the message in as many transactions as the server's
// recipient limit (452 4.5.3) requires.
func (x *ExchangeSMTP) transactions(c *smtp.Client, env *envelope.Envelope, raw io.ReaderAt, size int64) (Receipt, error) {
	var receipt Receipt
	pending := env.Recipients
	for len(pending) > 0 {
		tx, err := x.transaction(c, env.Mailbox, pending, raw, size)
		receipt.Refused = append(receipt.Refused, tx.refused...)
		if err != nil {
			return Receipt{Delivered: receipt.Delivered}, err
		}
		if len(tx.accepted) > 0 {
			receipt.Status, receipt.RequestID = 250, tx.reply
			receipt.Delivered = append(receipt.Delivered, tx.accepted...)
		}
		pending = tx.rest
	}
	if receipt.Status == 0 {
		// Every recipient was refused.
		return Receipt{}, recipientsRefused(receipt.Refused)
	}
	receipt.Delivered = nil // all of them: the send succeeded
	return receipt, nil
}

// txResult is the outcome of one transaction.
type txResult struct {
	accepted []string
	refused  []RecipientFailure
	rest     []string // for a further transaction: the server took no more (452)
	reply    string   // the server's final reply to the message
}

func (x *ExchangeSMTP) transaction(c *smtp.Client, mailbox string, recipients []string, raw io.ReaderAt, size int64) (txResult, error) {
	var tx txResult
	if err := c.Mail(mailbox, &smtp.MailOptions{Size: size}); err != nil {
		return tx, classifySMTP(stageMail, err)
	}
	for i, rcpt := range recipients {
		err := c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			tx.accepted = append(tx.accepted, rcpt)
			continue
		case !errors.As(err, &se):
			return tx, classifySMTP(stageRcpt, err)
		case se.Code == 452 && len(tx.accepted) > 0:
			// Too many recipients: the rest go in a further transaction.
			tx.rest = recipients[i:]
		case se.Code >= 500:
			tx.refused = append(tx.refused, RecipientFailure{Recipient: rcpt, Reply: replyText(se), Status: enhanced(se, "5.1.1")})
			continue
		default:
			// A temporary refusal of one recipient: the whole message is
			// tried again later, so nobody receives it twice.
			c.Reset()
			e := classifySMTP(stageRcpt, err)
			e.sessionUsable = true
			return txResult{}, e
		}
		break
	}
	if len(tx.accepted) == 0 {
		c.Reset()
		return tx, nil
	}
	w, err := c.Data()
	if err != nil {
		return tx, classifySMTP(stageData, err)
	}
	if err := writeWithoutBcc(w, io.NewSectionReader(raw, 0, size)); err != nil {
		w.Close()
		var read *readError
		if errors.As(err, &read) {
			return tx, &Error{Kind: KindTransient, Message: "read message from the spool", Err: err, way: waySMTP}
		}
		return tx, classifySMTP(stageData, err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return tx, classifySMTP(stageData, err)
	}
	tx.reply = "250 " + resp.StatusText
	return tx, nil
}

// take returns an idle session of mailbox, checked with RSET, or a new
// one.
func (x *ExchangeSMTP) take(ctx context.Context, mailbox string) (*smtpConn, error) {
	key := strings.ToLower(mailbox)
	for {
		x.mu.Lock()
		conns := x.idle[key]
		if len(conns) == 0 {
			x.mu.Unlock()
			break
		}
		c := conns[len(conns)-1]
		x.idle[key] = conns[:len(conns)-1]
		x.mu.Unlock()
		if x.now().Sub(c.idleSince) < smtpIdleLimit && c.client.Reset() == nil {
			return c, nil
		}
		x.drop(c)
	}
	return x.dial(ctx, mailbox)
}

// dial connects, starts TLS with the certificate verified, and
// authenticates as mailbox.
func (x *ExchangeSMTP) dial(ctx context.Context, mailbox string) (*smtpConn, error) {
	ctx, cancel := context.WithTimeout(ctx, smtpDialTimeout)
	defer cancel()
	token, err := x.tokens.Token(ctx, x.scope)
	if err != nil {
		return nil, err
	}
	conn, err := x.dialer.DialContext(ctx, "tcp", x.address)
	if err != nil {
		return nil, classifySMTP(stageConnect, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	client, err := smtp.NewClientStartTLS(conn, x.tls)
	if err != nil {
		conn.Close()
		return nil, classifySMTP(stageConnect, err)
	}
	if err := client.Auth(NewXOAUTH2Client(mailbox, token)); err != nil {
		client.Close()
		return nil, classifySMTP(stageAuth, err)
	}
	x.metrics.opened()
	return &smtpConn{client: client}, nil
}

// put keeps c for the next message of mailbox, unless enough are kept.
func (x *ExchangeSMTP) put(mailbox string, c *smtpConn) {
	key := strings.ToLower(mailbox)
	c.idleSince = x.now()
	x.mu.Lock()
	if !x.closing && len(x.idle[key]) < x.maxIdle {
		x.idle[key] = append(x.idle[key], c)
		x.mu.Unlock()
		return
	}
	x.mu.Unlock()
	x.quit(c)
}

func (x *ExchangeSMTP) quit(c *smtpConn) {
	c.client.Quit()
	x.drop(c)
}

func (x *ExchangeSMTP) drop(c *smtpConn) {
	c.client.Close()
	x.metrics.closed()
}
