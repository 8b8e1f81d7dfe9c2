package smtpserver

import (
	"strings"
	"testing"
)

// policyNetworks are identities by source address, each with one policy.
const policyNetworks = `
[[network]]
cidrs = ["127.0.0.6"]
mailbox = "strict@contoso.com"
header_from = "reject"

[[network]]
cidrs = ["127.0.0.7"]
mailbox = "internal@contoso.com"
allowed_recipients = ["*@contoso.com", "partner@example.com"]

[[network]]
cidrs = ["127.0.0.8"]
mailbox = "rated@contoso.com"
messages_per_minute = 2
recipients_per_day = 3
`

func TestHeaderFromReject(t *testing.T) {
	ts := startServer(t, parseConfig(t, policyNetworks))
	r := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.6"))
	r.greet()
	for _, header := range []string{
		"From: strict@contoso.com\r\nFrom: ceo@contoso.com\r\n",
		"From: strict@contoso.com\r\nSender: ceo@contoso.com\r\n",
		"From: strict@contoso.com\r\nResent-From: ceo@contoso.com\r\n",
		"From: Strict <strict@contoso.com>, ceo@contoso.com\r\n",
		"From: no address at all\r\n",
	} {
		r.cmd("MAIL FROM:<strict@contoso.com>", "250 ")
		r.cmd("RCPT TO:<a@example.com>", "250 ")
		r.data(header+"Subject: x\r\n\r\nbody\r\n", "550 5.7.1 ")
	}
	r.cmd("MAIL FROM:<strict@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.data("From: Strict <strict@contoso.com>\r\nSender: strict@contoso.com\r\nSubject: x\r\n\r\nbody\r\n", "250 ")
	if ids := ts.queued(t); len(ids) != 1 {
		t.Errorf("queued %v, want the allowed message alone", ids)
	}
}

func TestAllowedRecipients(t *testing.T) {
	ts := startServer(t, parseConfig(t, policyNetworks))
	r := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.7"))
	r.greet()
	r.cmd("MAIL FROM:<internal@contoso.com>", "250 ")
	r.cmd("RCPT TO:<someone@contoso.com>", "250 ")
	r.cmd("RCPT TO:<Partner@Example.com>", "250 ")
	r.cmd("RCPT TO:<exfiltrate@example.org>", "550 5.7.1 ")
}

func TestIdentityRates(t *testing.T) {
	ts := startServer(t, parseConfig(t, policyNetworks))
	r := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.8"))
	r.greet()
	r.cmd("MAIL FROM:<rated@contoso.com>", "250 ")
	r.cmd("RCPT TO:<a@example.com>", "250 ")
	r.cmd("RCPT TO:<b@example.com>", "250 ")
	r.data("Subject: 1\r\n\r\nbody\r\n", "250 ")
	r.cmd("MAIL FROM:<rated@contoso.com>", "250 ")
	r.cmd("RCPT TO:<c@example.com>", "250 ")
	// recipients_per_day = 3.
	r.cmd("RCPT TO:<d@example.com>", "451 4.7.0 ")
	r.data("Subject: 2\r\n\r\nbody\r\n", "250 ")
	// messages_per_minute = 2.
	r.cmd("MAIL FROM:<rated@contoso.com>", "451 4.7.0 ")
	// Other identities are not affected.
	other := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.7"))
	other.greet()
	other.cmd("MAIL FROM:<internal@contoso.com>", "250 ")
	if logs := ts.logs.String(); !strings.Contains(logs, "network:127.0.0.8/32") {
		t.Errorf("rate refusal does not name the identity:\n%s", logs)
	}
}
