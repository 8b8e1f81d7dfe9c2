package config

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/BurntSushi/toml"
)

// ClientSecretEnv is the environment variable that may hold the client
// secret instead of client_secret_file.
const ClientSecretEnv = "SMTPGW_CLIENT_SECRET"

// Parse validates a configuration read from the file called name. Every
// problem found is reported at once, as Errors.
func Parse(data []byte, name string) (*Config, error) {
	var cfg Config
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		// Syntax and type errors stop decoding: report the one found.
		return nil, decodeErrors(name, data, err)
	}
	v := &validator{file: name, lines: indexKeys(data)}
	v.unknownKeys(md.Undecoded(), "")
	cfg.applyDefaults()
	v.check(&cfg)
	if len(v.problems) > 0 {
		return nil, v.problems
	}
	return &cfg, nil
}

// ParseQueue validates only the [queue] section of a configuration, for
// the queue admin commands: they must work whatever the rest of the file
// holds, such as a credential they may not read.
func ParseQueue(data []byte, name string) (Queue, error) {
	q, _, err := ParseTrace(data, name)
	return q, err
}

// ParseTrace is ParseQueue for `smtpgw trace`, which also needs to know
// whether [log] trace is on.
func ParseTrace(data []byte, name string) (q Queue, traceOn bool, err error) {
	var doc struct {
		Queue Queue `toml:"queue"`
		Log   Log   `toml:"log"`
	}
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return Queue{}, false, decodeErrors(name, data, err)
	}
	v := &validator{file: name, lines: indexKeys(data)}
	v.unknownKeys(md.Undecoded(), "queue.")
	doc.Queue.applyDefaults()
	doc.Log.applyDefaults()
	v.checkQueue(&doc.Queue)
	if len(v.problems) > 0 {
		return Queue{}, false, v.problems
	}
	return doc.Queue, doc.Log.TraceEnabled(), nil
}

// ClientSecret returns the client secret from client_secret_file, else
// from the SMTPGW_CLIENT_SECRET environment variable. Errors never contain
// the secret.
func (g *Graph) ClientSecret() (string, error) {
	if g.ClientSecretFile != "" {
		data, err := os.ReadFile(g.ClientSecretFile)
		if err != nil {
			return "", fmt.Errorf("client secret: %w", err)
		}
		secret := strings.TrimSpace(string(data))
		if secret == "" {
			return "", fmt.Errorf("client secret: %s is empty", g.ClientSecretFile)
		}
		return secret, nil
	}
	if secret := strings.TrimSpace(os.Getenv(ClientSecretEnv)); secret != "" {
		return secret, nil
	}
	return "", fmt.Errorf("client secret: neither client_secret_file nor %s is set", ClientSecretEnv)
}

// Defaults of keys an admin may leave out.
const (
	defaultMaxMessageSize  = 35 << 20
	defaultMaxParts        = 10000
	defaultMaxRecipients   = 500
	defaultReadTimeout     = Duration(10 * 60e9)
	defaultWriteTimeout    = Duration(60e9)
	defaultMaxConnections  = 1000 // about 17 KiB each idle, 38 KiB over TLS (BenchmarkIdleConnections)
	defaultMaxAuthFailures = 3
	defaultShutdownTimeout = Duration(30e9)
	defaultMinTLSVersion   = "1.2"
	defaultGraphTimeout    = Duration(2 * 60e9)
	defaultQueueDir        = "./spool"
	maxMailboxConcurrency  = 4 // Graph's limit per app and mailbox
	defaultWorkers         = 16
	defaultMaxAge          = Duration(48 * 3600e9)
	defaultMinBackoff      = Duration(60e9)
	defaultMaxBackoff      = Duration(3600e9)
	defaultMinFreeSpace    = 1 << 30
	defaultFailedMaxAge    = Duration(30 * 24 * 3600e9)
	defaultMinProbe        = Duration(30e9)
	defaultTraceDays       = 30
	defaultMaxProbe        = Duration(300e9)

	defaultConnectionsPerAddress = 20
	defaultConnectionsPerMinute  = 60
	defaultMaxErrors             = 10
	defaultErrorsBeforeDelay     = 3
	defaultErrorDelay            = Duration(1e9)
	defaultSessionLifetime       = Duration(30 * 60e9)
	defaultIdleTimeout           = Duration(5 * 60e9)
	defaultAuthFailures          = 10
	defaultAuthFailingAddresses  = 5
	defaultAuthFailuresGlobal    = 100
	defaultAuthFailureWindow     = Duration(15 * 60e9)
	defaultAuthMinDuration       = Duration(400e6)
)

func (c *Config) applyDefaults() {
	s := &c.Server
	if s.Hostname == "" {
		s.Hostname, _ = os.Hostname()
	}
	setDefault(&s.MaxMessageSize, defaultMaxMessageSize)
	setDefault(&s.MaxParts, defaultMaxParts)
	setDefault(&s.MaxRecipients, defaultMaxRecipients)
	setDefault(&s.ReadTimeout, defaultReadTimeout)
	setDefault(&s.WriteTimeout, defaultWriteTimeout)
	setDefault(&s.MaxConnections, defaultMaxConnections)
	setDefault(&s.MaxAuthFailures, defaultMaxAuthFailures)
	setDefault(&s.ShutdownTimeout, defaultShutdownTimeout)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		setDefault(&l.Protocol, ProtocolSMTP)
		setDefault(&l.TLS, TLSNone)
		setDefault(&l.MinTLSVersion, defaultMinTLSVersion)
		l.MinVersion = tlsVersions[l.MinTLSVersion]
	}
	if g := c.Graph; g != nil {
		setDefault(&g.Cloud, CloudGlobal)
		setDefault(&g.Timeout, defaultGraphTimeout)
		defaultTrue(&g.SaveToSentItems)
		if root, ok := GraphRoots[g.Cloud]; ok {
			setDefault(&g.Scope, root+"/.default")
		}
	}
	c.Exchange.applyDefaults(c.Graph)
	c.Queue.applyDefaults()
	for i := range c.Users {
		defaultSenders(&c.Users[i].AllowedSenders, c.Users[i].Mailbox)
		setDefault(&c.Users[i].HeaderFrom, HeaderFromRewrite)
	}
	for i := range c.Networks {
		defaultSenders(&c.Networks[i].AllowedSenders, c.Networks[i].Mailbox)
		setDefault(&c.Networks[i].HeaderFrom, HeaderFromRewrite)
	}
	l := &c.Limits
	setDefault(&l.ConnectionsPerAddress, defaultConnectionsPerAddress)
	setDefault(&l.ConnectionsPerMinute, defaultConnectionsPerMinute)
	setDefault(&l.MaxErrors, defaultMaxErrors)
	setDefault(&l.ErrorsBeforeDelay, defaultErrorsBeforeDelay)
	setDefault(&l.ErrorDelay, defaultErrorDelay)
	setDefault(&l.SessionLifetime, defaultSessionLifetime)
	setDefault(&l.IdleTimeout, defaultIdleTimeout)
	setDefault(&l.AuthFailures, defaultAuthFailures)
	setDefault(&l.AuthFailingAddresses, defaultAuthFailingAddresses)
	setDefault(&l.AuthFailuresGlobal, defaultAuthFailuresGlobal)
	setDefault(&l.AuthFailureWindow, defaultAuthFailureWindow)
	setDefault(&l.AuthMinDuration, defaultAuthMinDuration)
	setDefault(&l.AuthWorkers, 2*runtime.NumCPU())
	c.Log.applyDefaults()
}

func (l *Log) applyDefaults() {
	setDefault(&l.Level, "info")
	setDefault(&l.Format, "text")
	defaultTrue(&l.Trace)
	setDefault(&l.TraceDays, defaultTraceDays)
}

func (q *Queue) applyDefaults() {
	setDefault(&q.Dir, defaultQueueDir)
	defaultTrue(&q.Bounce)
	setDefault(&q.MailboxConcurrency, maxMailboxConcurrency)
	setDefault(&q.Workers, defaultWorkers)
	setDefault(&q.MaxAge, defaultMaxAge)
	setDefault(&q.MinBackoff, defaultMinBackoff)
	setDefault(&q.MaxBackoff, defaultMaxBackoff)
	setDefault(&q.MinProbeInterval, defaultMinProbe)
	setDefault(&q.MaxProbeInterval, defaultMaxProbe)
	setDefault(&q.MinFreeSpace, defaultMinFreeSpace)
	setDefault(&q.FailedMaxAge, defaultFailedMaxAge)
}

// defaultSenders lets an identity send as its own mailbox when the admin
// listed no allowed_senders.
func defaultSenders(senders *[]string, mailbox string) {
	if len(*senders) == 0 && mailbox != "" {
		*senders = []string{mailbox}
	}
}

// defaultTrue sets an on/off key the admin left out to on.
func defaultTrue(v **bool) {
	if *v == nil {
		on := true
		*v = &on
	}
}

// setDefault sets *v to def when the admin left it out (zero).
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
