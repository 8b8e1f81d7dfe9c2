// Package config reads and validates the gateway's TOML configuration.
//
// The key names are the product's interface: admins' files depend on them.
package config

import (
	"crypto/tls"
	"net/netip"
	"time"
)

// Config is a loaded, validated configuration with defaults applied.
type Config struct {
	Server    Server     `toml:"server"`
	Listeners []Listener `toml:"listener"`
	TLS       TLS        `toml:"tls"`
	Graph     *Graph     `toml:"graph"`  // nil when absent; exactly one of Graph and Outbox is set
	Outbox    *Outbox    `toml:"outbox"` // nil when absent
	Exchange  Exchange   `toml:"exchange"`
	Queue     Queue      `toml:"queue"`
	Users     []User     `toml:"user"`
	Networks  []Network  `toml:"network"`
	Limits    Limits     `toml:"limits"`
	Log       Log        `toml:"log"`
	Metrics   Metrics    `toml:"metrics"`

	// Warnings are risky but valid settings, for the log and `check`.
	Warnings []string `toml:"-"`
}

// Server holds settings shared by every listener.
type Server struct {
	Hostname        string   `toml:"hostname"`          // default: os.Hostname()
	MaxMessageSize  Size     `toml:"max_message_size"`  // default 35MiB
	MaxParts        int      `toml:"max_parts"`         // MIME parts converted one by one, default 10000; the rest travel as one .eml
	MaxRecipients   int      `toml:"max_recipients"`    // default 500
	ReadTimeout     Duration `toml:"read_timeout"`      // default 10m; covers the whole DATA body
	WriteTimeout    Duration `toml:"write_timeout"`     // default 1m
	MaxConnections  int      `toml:"max_connections"`   // default 1000
	MaxAuthFailures int      `toml:"max_auth_failures"` // per connection, default 3; then the connection is closed
	ShutdownTimeout Duration `toml:"shutdown_timeout"`  // default 30s
}

// TLS modes of a listener.
const (
	TLSNone     = "none"
	TLSStartTLS = "starttls"
	TLSImplicit = "implicit"
)

// Listener protocols.
const (
	ProtocolSMTP = "smtp"
	ProtocolIMAP = "imap"
	ProtocolPOP3 = "pop3"
)

// Listener is one [[listener]] entry.
type Listener struct {
	Address           string `toml:"address"`
	Protocol          string `toml:"protocol"` // ProtocolSMTP, ProtocolIMAP or ProtocolPOP3; default smtp
	TLS               string `toml:"tls"`      // TLSNone, TLSStartTLS or TLSImplicit; default none
	AllowInsecureAuth bool   `toml:"allow_insecure_auth"`
	MinTLSVersion     string `toml:"min_tls_version"` // "1.0" … "1.3"; default "1.2"

	// MinVersion is MinTLSVersion as a crypto/tls constant, set by Load.
	MinVersion uint16 `toml:"-"`
}

// TLS names the certificate for TLS listeners; when both are empty a
// self-signed certificate is generated at start.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// Cloud names.
const (
	CloudGlobal   = "global"
	CloudUSGov    = "usgov"
	CloudUSGovDoD = "usgov-dod"
	CloudChina    = "china"
)

// GraphRoots maps each cloud to its Microsoft Graph root URL.
var GraphRoots = map[string]string{
	CloudGlobal:   "https://graph.microsoft.com",
	CloudUSGov:    "https://graph.microsoft.us",
	CloudUSGovDoD: "https://dod-graph.microsoft.us",
	CloudChina:    "https://microsoftgraph.chinacloudapi.cn",
}

// Graph is the [graph] section: the Entra ID app and the Graph endpoint.
type Graph struct {
	TenantID                string   `toml:"tenant_id"`
	ClientID                string   `toml:"client_id"`
	ClientSecretFile        string   `toml:"client_secret_file"`    // or env SMTPGW_CLIENT_SECRET
	ClientSecretExpires     Date     `toml:"client_secret_expires"` // copied from the Entra ID portal; zero: not known
	CertificateFile         string   `toml:"certificate_file"`
	CertificatePasswordFile string   `toml:"certificate_password_file"`
	Cloud                   string   `toml:"cloud"`          // default global
	AuthorityHost           string   `toml:"authority_host"` // https URL; overrides the cloud's login host
	Endpoint                string   `toml:"endpoint"`       // https URL; overrides where Graph requests go
	Scope                   string   `toml:"scope"`          // of the token; default the cloud's Graph, whatever the endpoint
	SaveToSentItems         *bool    `toml:"save_to_sent_items"`
	Timeout                 Duration `toml:"timeout"` // per Graph request, default 2m
	// ManagedIdentity uses the Azure managed identity (or workload identity
	// when its environment is present) instead of a secret or certificate.
	ManagedIdentity bool `toml:"managed_identity"`
}

// SaveToSent reports the effective save_to_sent_items (Parse sets the
// default, true).
func (g *Graph) SaveToSent() bool { return *g.SaveToSentItems }

// Outbox is the [outbox] section: write Graph request bodies to a folder.
type Outbox struct {
	Dir string `toml:"dir"`
}

// Queue is the [queue] section: the durable spool and delivery schedule.
type Queue struct {
	Dir                string   `toml:"dir"`                 // default ./spool
	MailboxConcurrency int      `toml:"mailbox_concurrency"` // default and maximum 4
	Workers            int      `toml:"workers"`             // global limit of Graph calls in flight, default 16
	MaxAge             Duration `toml:"max_age"`             // default 48h
	MinBackoff         Duration `toml:"min_backoff"`         // default 1m
	MaxBackoff         Duration `toml:"max_backoff"`         // default 1h
	Bounce             *bool    `toml:"bounce"`              // default true
	MinProbeInterval   Duration `toml:"min_probe_interval"`  // while the credential is refused: first probe after, default 30s
	MaxProbeInterval   Duration `toml:"max_probe_interval"`  // probe intervals double up to this, default 5m
	// MinFreeSpace is the disk space new mail must leave free in the spool's
	// file system; below it clients get 452 4.3.1.
	MinFreeSpace Size     `toml:"min_free_space"` // default 1GiB
	FailedMaxAge Duration `toml:"failed_max_age"` // dead letters are deleted after it, default 30 days
}

// BounceEnabled reports the effective bounce setting (Parse and
// ParseQueue set the default, true).
func (q *Queue) BounceEnabled() bool { return *q.Bounce }

// User is one [[user]] entry: an account for SMTP AUTH (sending) and for
// IMAP and POP3 (reading). Sending and reading are separate rights.
type User struct {
	Username       string   `toml:"username"`
	PasswordHash   string   `toml:"password_hash"`   // bcrypt
	Mailbox        string   `toml:"mailbox"`         // empty: the envelope sender's own mailbox
	AllowedSenders []string `toml:"allowed_senders"` // default [Mailbox]
	// ReadMailbox is the one mailbox this user opens over IMAP or POP3;
	// empty: the user cannot read.
	ReadMailbox string `toml:"read_mailbox"`
	Policy
}

// Network is one [[network]] entry: clients identified by address.
type Network struct {
	CIDRs          []string `toml:"cidrs"`
	Mailbox        string   `toml:"mailbox"`
	AllowedSenders []string `toml:"allowed_senders"` // default [Mailbox]
	Policy

	// A network's clients are exempt from the per-address limits of
	// [limits]; a network may set its own. 0: no per-address limit.
	ConnectionsPerAddress int `toml:"connections_per_address"`
	ConnectionsPerMinute  int `toml:"connections_per_minute"`

	// Prefixes are CIDRs parsed by Load (a bare address becomes a /32 or /128).
	Prefixes []netip.Prefix `toml:"-"`
}

// header_from values.
const (
	HeaderFromRewrite = "rewrite" // a foreign From becomes the mailbox; Sender and Resent-* are dropped
	HeaderFromReject  = "reject"  // a foreign From, Sender or Resent-* is refused at the end of DATA
)

// Policy is what one identity ([[user]] or [[network]]) may send, beyond
// its allowed senders.
type Policy struct {
	HeaderFrom        string   `toml:"header_from"`         // HeaderFromRewrite or HeaderFromReject; default rewrite
	AllowedRecipients []string `toml:"allowed_recipients"`  // patterns as allowed_senders; default any
	MessagesPerMinute int      `toml:"messages_per_minute"` // 0: no limit
	RecipientsPerDay  int      `toml:"recipients_per_day"`  // 0: no limit
}

// Limits is the [limits] section: what one client may cost the gateway.
// The keys follow Postfix's anvil and smtpd error limits (see docs/security.md).
type Limits struct {
	// Per address (IPv6: per /64) of a client neither in a [[network]] nor
	// logged in; [[network]] clients are exempt unless theirs sets its own.
	ConnectionsPerAddress int      `toml:"connections_per_address"` // open at once, default 20
	ConnectionsPerMinute  int      `toml:"connections_per_minute"`  // ended without a login, default 60
	MaxErrors             int      `toml:"max_errors"`              // error replies per connection before 421, default 10
	ErrorsBeforeDelay     int      `toml:"errors_before_delay"`     // error replies answered at once, default 3
	ErrorDelay            Duration `toml:"error_delay"`             // added per further error reply, default 1s
	SessionLifetime       Duration `toml:"session_lifetime"`        // default 30m, not extended by NOOP or RSET
	IdleTimeout           Duration `toml:"idle_timeout"`            // waiting for a command, default 5m
	AuthFailures          int      `toml:"auth_failures"`           // per address (IPv6: per /64), default 10
	AuthFailingAddresses  int      `toml:"auth_failing_addresses"`  // addresses failing in one /24 or /48 before all of it waits, default 5
	AuthFailuresGlobal    int      `toml:"auth_failures_global"`    // of all clients; then every failing address waits, default 100
	AuthFailureWindow     Duration `toml:"auth_failure_window"`     // default 15m
	AuthMinDuration       Duration `toml:"auth_min_duration"`       // every failed login answer takes this long at least, default 400ms
	AuthWorkers           int      `toml:"auth_workers"`            // concurrent bcrypt checks, default 2 per CPU
}

// Log is the [log] section.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error; default info
	Format string `toml:"format"` // text | json; default text
	// DebugClients limits the SMTP conversations logged at level debug to
	// these addresses or CIDRs; empty: every client's.
	DebugClients []string `toml:"debug_clients"`

	// Subjects adds the Subject header to the accepted log line and the
	// message trace; off by default, as subjects can be private.
	Subjects bool `toml:"subjects"`
	// Trace keeps the message trace in the spool, default true; false
	// writes none (and `smtpgw trace` says so).
	Trace *bool `toml:"trace"`
	// TraceDays is how many days the message trace keeps, default 30.
	TraceDays int `toml:"trace_days"`

	// DebugPrefixes are DebugClients parsed by Load.
	DebugPrefixes []netip.Prefix `toml:"-"`
}

// TraceEnabled reports whether the message trace is written (Parse and
// ParseTrace set the default, true).
func (l *Log) TraceEnabled() bool { return *l.Trace }

// Metrics is the [metrics] section.
type Metrics struct {
	Address string `toml:"address"` // e.g. "127.0.0.1:9090"; empty: no metrics endpoint
}

// Size is a byte count written as "35MiB", "10MB", "512KiB" or a bare number.
type Size int64

// Date is a day, written as a TOML date (2027-06-30) or a string
// ("2027-06-30"); it stands for the start of that day in UTC.
type Date struct{ time.Time }

// Duration is a time.Duration written as "48h", "90s", "1h30m".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// tlsVersions maps min_tls_version values to crypto/tls constants.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}
