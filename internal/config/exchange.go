package config

import (
	"net"
	"net/url"
	"strings"
)

// send_via values: the way messages leave the gateway.
const (
	SendViaGraph = "graph" // Microsoft Graph sendMail (default)
	SendViaSMTP  = "smtp"  // Exchange Online SMTP AUTH with XOAUTH2 (SMTP.SendAsApp)
)

// Exchange is the [exchange] section: Exchange Online's IMAP, POP3 and
// SMTP endpoints, reached with the app credential of [graph] and a token
// for Scope.
type Exchange struct {
	IMAPAddress string `toml:"imap_address"` // implicit TLS; default per [graph] cloud
	POP3Address string `toml:"pop3_address"` // implicit TLS; default per [graph] cloud
	SMTPAddress string `toml:"smtp_address"` // STARTTLS; default per [graph] cloud
	Scope       string `toml:"scope"`        // of the token; default per [graph] cloud
	SendVia     string `toml:"send_via"`     // SendViaGraph or SendViaSMTP; default graph
}

// ExchangeEndpoints are one cloud's Exchange Online endpoints.
type ExchangeEndpoints struct {
	IMAPAddress, POP3Address, SMTPAddress, Scope string
}

// ExchangeClouds maps each [graph] cloud to its Exchange Online endpoints.
// GCC (moderate) tenants use the global ones; "usgov" is GCC High.
var ExchangeClouds = map[string]ExchangeEndpoints{
	CloudGlobal: {
		IMAPAddress: "outlook.office365.com:993", POP3Address: "outlook.office365.com:995",
		SMTPAddress: "smtp.office365.com:587", Scope: "https://outlook.office365.com/.default",
	},
	CloudUSGov: {
		IMAPAddress: "outlook.office365.us:993", POP3Address: "outlook.office365.us:995",
		SMTPAddress: "smtp.office365.us:587", Scope: "https://outlook.office365.us/.default",
	},
	CloudUSGovDoD: {
		IMAPAddress: "outlook-dod.office365.us:993", POP3Address: "outlook-dod.office365.us:995",
		SMTPAddress: "outlook-dod.office365.us:587", Scope: "https://outlook-dod.office365.us/.default",
	},
	CloudChina: {
		IMAPAddress: "partner.outlook.cn:993", POP3Address: "partner.outlook.cn:995",
		SMTPAddress: "smtp.partner.outlook.cn:587", Scope: "https://partner.outlook.cn/.default",
	},
}

// applyDefaults fills what the admin left out from the cloud of [graph]
// (global without one).
func (e *Exchange) applyDefaults(g *Graph) {
	cloud := CloudGlobal
	if g != nil {
		cloud = g.Cloud
	}
	def, ok := ExchangeClouds[cloud]
	if !ok {
		def = ExchangeClouds[CloudGlobal]
	}
	setDefault(&e.IMAPAddress, def.IMAPAddress)
	setDefault(&e.POP3Address, def.POP3Address)
	setDefault(&e.SMTPAddress, def.SMTPAddress)
	setDefault(&e.Scope, def.Scope)
	setDefault(&e.SendVia, SendViaGraph)
}

func (v *validator) checkExchange(c *Config) {
	e := &c.Exchange
	for _, a := range []struct{ key, value string }{
		{"exchange.imap_address", e.IMAPAddress},
		{"exchange.pop3_address", e.POP3Address},
		{"exchange.smtp_address", e.SMTPAddress},
	} {
		if host, port, err := net.SplitHostPort(a.value); err != nil || host == "" || port == "" {
			v.add(a.key, "must be host:port, such as outlook.office365.com:993, not %q", a.value)
		}
	}
	v.defaultScope("exchange.scope", e.Scope, "https://outlook.office365.com/.default")
	switch e.SendVia {
	case SendViaGraph:
	case SendViaSMTP:
		if c.Graph == nil {
			v.add("exchange.send_via", "\"smtp\" needs the app credential of [graph]; [outbox] sends nowhere")
		}
	default:
		v.add("exchange.send_via", "must be graph or smtp, not %q", e.SendVia)
	}
}

// defaultScope reports a token scope that is not a resource's https URL
// ending in /.default, as client-credentials tokens need.
func (v *validator) defaultScope(key, scope, example string) {
	if u, err := url.Parse(scope); scope != "" && (err != nil || u.Scheme != "https" || u.Host == "" || !strings.HasSuffix(u.Path, "/.default")) {
		v.add(key, "must be a resource's https URL ending in /.default, such as %s, not %q", example, scope)
	}
}
