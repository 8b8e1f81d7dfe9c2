package main

import (
	"context"
	"errors"
	"slices"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// readsMail reports whether cfg has an IMAP or POP3 listener.
func readsMail(cfg *config.Config) bool {
	return slices.ContainsFunc(cfg.Listeners, func(l config.Listener) bool {
		return l.Protocol == config.ProtocolIMAP || l.Protocol == config.ProtocolPOP3
	})
}

// checkExchange gets a token for Exchange Online's scope and reads its
// roles; with mailbox set it then logs in as that mailbox over IMAP and
// POP3, as the reading listeners do, and says which admin step is missing
// when Exchange refuses.
func checkExchange(cfg *config.Config, mailbox string, f *findings) {
	graph, err := upstream.NewGraph(cfg.Graph, upstream.Options{})
	if err != nil {
		f.fail("graph: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	scope := cfg.Exchange.Scope
	token, err := graph.Token(ctx, scope)
	if err != nil {
		reportTokenFailure(f, cfg.Graph, err)
		return
	}
	info, err := upstream.ReadTokenInfo(token)
	if err != nil {
		f.fail("the Exchange token for %s: %v", scope, err)
		return
	}
	f.info("Exchange token OK (scope %s): application roles %v", scope, info.Roles)
	for _, need := range []struct{ protocol, role string }{{"IMAP", "IMAP.AccessAsApp"}, {"POP3", "POP.AccessAsApp"}} {
		if !slices.Contains(info.Roles, need.role) {
			f.warn("the token carries no %s: add that application permission of \"Office 365 Exchange Online\" and grant admin consent, or reading over %s fails", need.role, need.protocol)
		}
	}
	if mailbox == "" {
		return
	}
	dialer := &upstream.MailboxDialer{
		IMAPAddress: cfg.Exchange.IMAPAddress,
		POP3Address: cfg.Exchange.POP3Address,
		Token:       func(context.Context) (string, error) { return token, nil },
	}
	for _, protocol := range []string{config.ProtocolIMAP, config.ProtocolPOP3} {
		conn, _, err := dialer.Dial(ctx, protocol, mailbox)
		switch {
		case err == nil:
			conn.Close()
			f.info("%s login to %s as %s: OK", protocol, dialer.Address(protocol), mailbox)
		case errors.Is(err, relay.ErrUpstreamRefused):
			f.fail("%v", err)
		default:
			f.fail("%s login as %s failed, not for lack of rights: %v", protocol, mailbox, err)
		}
	}
}
