package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/bcrypt"
)

// validator collects every problem of one file, each with its line.
type validator struct {
	file     string
	lines    keyLines
	problems Errors
	warnings []string
}

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Line: v.lines.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// unknownKeys reports each key the file sets that the configuration does
// not know, once per place it is written, with its index in an array of
// tables (user[1].mailbx). Only keys starting with prefix count.
func (v *validator) unknownKeys(keys []toml.Key, prefix string) {
	seen := map[string]bool{}
	for _, k := range keys {
		plain := k.String()
		if seen[plain] || !strings.HasPrefix(plain, prefix) {
			continue
		}
		seen[plain] = true
		written := v.lines.occurrences(plain)
		if len(written) == 0 {
			v.problems = append(v.problems, Problem{File: v.file, Key: plain, Msg: "unknown key"})
		}
		for _, o := range written {
			v.problems = append(v.problems, Problem{File: v.file, Line: o.line, Key: o.key, Msg: "unknown key"})
		}
	}
}

// warn records a risky but valid setting; check hands them to the Config.
func (v *validator) warn(format string, args ...any) {
	v.warnings = append(v.warnings, fmt.Sprintf(format, args...))
}

func (v *validator) check(c *Config) {
	v.checkServer(&c.Server)
	v.checkListeners(c)
	v.checkTLSFiles(&c.TLS)
	switch {
	case c.Graph == nil && c.Outbox == nil:
		v.add("graph", "one of [graph] and [outbox] is required: where should messages go?")
	case c.Graph != nil && c.Outbox != nil:
		v.add("outbox", "[graph] and [outbox] are both set; keep one")
	case c.Graph != nil:
		v.checkGraph(c.Graph)
	default:
		if c.Outbox.Dir == "" {
			v.add("outbox.dir", "is required")
		}
	}
	v.checkExchange(c)
	v.checkQueue(&c.Queue)
	v.checkUsers(c.Users)
	v.checkNetworks(c.Networks)
	v.checkLimits(&c.Limits)
	if len(c.Users) == 0 && len(c.Networks) == 0 {
		v.add("user", "no [[user]] and no [[network]]: no client could submit mail")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	if c.Log.TraceDays < 0 {
		v.add("log.trace_days", "must be a number of days, not %d", c.Log.TraceDays)
	}
	for _, client := range c.Log.DebugClients {
		p, err := ParsePrefix(client)
		if err != nil {
			v.add("log.debug_clients", "%q is not an address or CIDR", client)
			continue
		}
		c.Log.DebugPrefixes = append(c.Log.DebugPrefixes, p)
	}
	if a := c.Metrics.Address; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			v.add("metrics.address", "must be host:port: %v", err)
		}
	}
	c.Warnings = v.warnings
}

func (v *validator) checkServer(s *Server) {
	if s.MaxMessageSize < 1024 {
		v.add("server.max_message_size", "must be at least 1KiB")
	}
	if s.MaxParts < 0 {
		v.add("server.max_parts", "must be positive")
	}
	if s.MaxRecipients < 0 {
		v.add("server.max_recipients", "must be positive")
	}
	if s.MaxConnections < 0 {
		v.add("server.max_connections", "must be positive")
	}
	if s.MaxAuthFailures < 0 {
		v.add("server.max_auth_failures", "must be positive")
	}
}

func (v *validator) checkListeners(c *Config) {
	if len(c.Listeners) == 0 {
		v.add("listener", "at least one [[listener]] is required")
	}
	seen := map[string]bool{}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listener[%d]", i)
		host, port, err := net.SplitHostPort(l.Address)
		switch {
		case l.Address == "":
			v.add(key+".address", "is required")
		case err != nil:
			v.add(key+".address", "must be host:port: %v", err)
		case seen[l.Address] && port != "0": // port 0: each gets its own
			v.add(key+".address", "%s is used by another listener", l.Address)
		}
		seen[l.Address] = true
		switch l.Protocol {
		case ProtocolSMTP:
		case ProtocolIMAP, ProtocolPOP3:
			if c.Graph == nil {
				v.add(key+".protocol", "%s needs the [graph] app credential to reach Exchange Online; [outbox] cannot read mail", l.Protocol)
			}
		default:
			v.add(key+".protocol", "must be smtp, imap or pop3, not %q", l.Protocol)
		}
		switch l.TLS {
		case TLSNone, TLSStartTLS, TLSImplicit:
		default:
			v.add(key+".tls", "must be none, starttls or implicit, not %q", l.TLS)
		}
		if _, ok := tlsVersions[l.MinTLSVersion]; !ok {
			v.add(key+".min_tls_version", "must be 1.0, 1.1, 1.2 or 1.3, not %q", l.MinTLSVersion)
		}
		if l.TLS == TLSNone && l.AllowInsecureAuth && !isLoopback(host) {
			v.warn("listener %s accepts passwords without TLS (allow_insecure_auth) on a non-loopback address", l.Address)
		}
	}
}

func isLoopback(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback() || host == "localhost"
}

func (v *validator) checkTLSFiles(t *TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.add("tls", "cert_file and key_file go together: set both or neither")
	}
	v.readable("tls.cert_file", t.CertFile)
	v.readable("tls.key_file", t.KeyFile)
}

// readable reports a named file that cannot be read now; "" is fine.
func (v *validator) readable(key, path string) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		v.add(key, "cannot read %s: %v", path, unwrapPathError(err))
		return
	}
	f.Close()
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

var tenantRE = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9.-]+\.[A-Za-z]{2,})$`)
var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (v *validator) checkGraph(g *Graph) {
	if !tenantRE.MatchString(g.TenantID) {
		v.add("graph.tenant_id", "must be the tenant's GUID or its domain name (e.g. contoso.onmicrosoft.com)")
	}
	if !guidRE.MatchString(g.ClientID) && !(g.ManagedIdentity && g.ClientID == "") {
		v.add("graph.client_id", "must be the app registration's application (client) ID, a GUID")
	}
	credentials := 0
	for _, set := range []bool{g.ClientSecretFile != "" || os.Getenv(ClientSecretEnv) != "", g.CertificateFile != "", g.ManagedIdentity} {
		if set {
			credentials++
		}
	}
	switch {
	case credentials == 0:
		v.add("graph", "no credential: set client_secret_file (or %s), certificate_file, or managed_identity = true", ClientSecretEnv)
	case credentials > 1:
		v.add("graph", "more than one credential: keep only one of client_secret_file / %s, certificate_file and managed_identity", ClientSecretEnv)
	}
	v.readable("graph.client_secret_file", g.ClientSecretFile)
	v.readable("graph.certificate_file", g.CertificateFile)
	v.readable("graph.certificate_password_file", g.CertificatePasswordFile)
	if g.CertificatePasswordFile != "" && g.CertificateFile == "" {
		v.add("graph.certificate_password_file", "needs certificate_file")
	}
	if !g.ClientSecretExpires.IsZero() && (g.CertificateFile != "" || g.ManagedIdentity) {
		v.add("graph.client_secret_expires", "is the expiry of a client secret, but the credential is not one")
	}
	switch g.Cloud {
	case CloudGlobal, CloudUSGov, CloudUSGovDoD, CloudChina:
	default:
		v.add("graph.cloud", "must be global, usgov, usgov-dod or china, not %q", g.Cloud)
	}
	v.httpsURL("graph.authority_host", g.AuthorityHost)
	v.httpsURL("graph.endpoint", g.Endpoint)
	v.defaultScope("graph.scope", g.Scope, "https://graph.microsoft.com/.default")
}

func (v *validator) httpsURL(key, s string) {
	if s == "" {
		return
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		v.add(key, "must be an https URL such as https://login.example.com/, not %q", s)
	}
}

func (v *validator) checkQueue(q *Queue) {
	if q.MailboxConcurrency < 1 || q.MailboxConcurrency > maxMailboxConcurrency {
		v.add("queue.mailbox_concurrency", "must be 1 to %d (Graph allows 4 concurrent requests per mailbox)", maxMailboxConcurrency)
	}
	if q.Workers < 1 {
		v.add("queue.workers", "must be at least 1")
	}
	if q.FailedMaxAge < 0 {
		v.add("queue.failed_max_age", "must not be negative")
	}
	if q.MinBackoff > q.MaxBackoff {
		v.add("queue.min_backoff", "is longer than max_backoff (%s)", q.MaxBackoff)
	}
	if q.MinProbeInterval > q.MaxProbeInterval {
		v.add("queue.min_probe_interval", "is longer than max_probe_interval (%s)", q.MaxProbeInterval)
	}
}

func (v *validator) checkUsers(users []User) {
	seen := map[string]bool{}
	for i, u := range users {
		key := fmt.Sprintf("user[%d]", i)
		switch {
		case u.Username == "":
			v.add(key+".username", "is required")
		case seen[strings.ToLower(u.Username)]:
			v.add(key+".username", "%q is defined twice", u.Username)
		}
		seen[strings.ToLower(u.Username)] = true
		if cost, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil || cost < bcrypt.MinCost {
			v.add(key+".password_hash", "must be a bcrypt hash (make one with `smtpgw hash-password`)")
		} else if warning := WeakHashWarning(u.PasswordHash); warning != "" {
			v.warn("user %q: %s", u.Username, warning)
		}
		// A user with only read_mailbox reads and cannot send.
		if u.Mailbox == "" && len(u.AllowedSenders) == 0 && u.ReadMailbox == "" {
			v.add(key+".mailbox", "a user without mailbox sends as its envelope sender, so it needs allowed_senders (or read_mailbox, to only read)")
		}
		if u.ReadMailbox != "" && !isAddress(u.ReadMailbox) {
			v.add(key+".read_mailbox", "must be a mailbox address like helpdesk@example.com, not %q", u.ReadMailbox)
		}
		v.identityAddresses(key, u.Mailbox, u.AllowedSenders)
		v.checkPolicy(key, &u.Policy)
	}
}

func (v *validator) checkNetworks(networks []Network) {
	for i := range networks {
		n := &networks[i]
		key := fmt.Sprintf("network[%d]", i)
		if len(n.CIDRs) == 0 {
			v.add(key+".cidrs", "at least one address or CIDR is required")
		}
		for _, c := range n.CIDRs {
			p, err := ParsePrefix(c)
			if err != nil {
				v.add(key+".cidrs", "%q is not an address or CIDR", c)
				continue
			}
			if p.Addr().Is4() && p.Bits() < 16 || p.Addr().Is6() && p.Bits() < 48 {
				v.warn("network %s lets a wide range submit without AUTH", p)
			}
			n.Prefixes = append(n.Prefixes, p)
		}
		if n.Mailbox == "" {
			v.add(key+".mailbox", "is required: the mailbox these clients send as")
		}
		v.identityAddresses(key, n.Mailbox, n.AllowedSenders)
		v.checkPolicy(key, &n.Policy)
		v.nonNegative(key+".connections_per_address", n.ConnectionsPerAddress)
		v.nonNegative(key+".connections_per_minute", n.ConnectionsPerMinute)
	}
}

func (v *validator) checkPolicy(key string, p *Policy) {
	switch p.HeaderFrom {
	case HeaderFromRewrite, HeaderFromReject:
	default:
		v.add(key+".header_from", "must be rewrite or reject, not %q", p.HeaderFrom)
	}
	v.addressPatterns(key+".allowed_recipients", p.AllowedRecipients)
	v.nonNegative(key+".messages_per_minute", p.MessagesPerMinute)
	v.nonNegative(key+".recipients_per_day", p.RecipientsPerDay)
}

func (v *validator) checkLimits(l *Limits) {
	for _, n := range []struct {
		key   string
		value int
	}{
		{"limits.connections_per_address", l.ConnectionsPerAddress},
		{"limits.connections_per_minute", l.ConnectionsPerMinute},
		{"limits.max_errors", l.MaxErrors},
		{"limits.errors_before_delay", l.ErrorsBeforeDelay},
		{"limits.auth_failures", l.AuthFailures},
		{"limits.auth_failing_addresses", l.AuthFailingAddresses},
		{"limits.auth_failures_global", l.AuthFailuresGlobal},
		{"limits.auth_workers", l.AuthWorkers},
	} {
		if n.value < 1 {
			v.add(n.key, "must be at least 1")
		}
	}
	for _, d := range []struct {
		key   string
		value Duration
	}{
		{"limits.error_delay", l.ErrorDelay},
		{"limits.session_lifetime", l.SessionLifetime},
		{"limits.idle_timeout", l.IdleTimeout},
		{"limits.auth_failure_window", l.AuthFailureWindow},
		{"limits.auth_min_duration", l.AuthMinDuration},
	} {
		if d.value < 0 {
			v.add(d.key, "must not be negative")
		}
	}
}

func (v *validator) nonNegative(key string, n int) {
	if n < 0 {
		v.add(key, "must not be negative")
	}
}

// ParsePrefix reads a CIDR, or a bare address as a single-host prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (v *validator) identityAddresses(key, mailbox string, senders []string) {
	if mailbox != "" && !isAddress(mailbox) {
		v.add(key+".mailbox", "%q is not an email address", mailbox)
	}
	v.addressPatterns(key+".allowed_senders", senders)
}

// addressPatterns checks a list of addresses and *@domain patterns.
func (v *validator) addressPatterns(key string, patterns []string) {
	for _, s := range patterns {
		if domain, ok := strings.CutPrefix(s, "*@"); ok {
			if !isAddress("x@" + domain) {
				v.add(key, "%q: a pattern is *@domain", s)
			}
		} else if !isAddress(s) {
			v.add(key, "%q is neither an address nor *@domain", s)
		}
	}
}

// isAddress accepts a bare addr-spec with a dotted domain.
func isAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	domain := s[strings.LastIndexByte(s, '@')+1:]
	return strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}
