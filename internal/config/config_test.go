package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw"
)

// testHash is a bcrypt hash of "secret" at the minimum cost.
const testHash = "$2a$04$uV9ZIi0T0p1Ij1Bj9m0UNu3c7tTpVxgPOUUhpPCWq.C8tvUOwXO0m"

const minimal = `
[[listener]]
address = "127.0.0.1:2525"

[outbox]
dir = "out"

[[network]]
cidrs = ["127.0.0.1"]
mailbox = "noreply@example.com"
`

func TestExampleConfigParses(t *testing.T) {
	cfg, err := Parse(smtpgw.ExampleConfig, "config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listeners[0].Address != "127.0.0.1:2525" || cfg.Outbox == nil || cfg.Outbox.Dir != "./outbox" {
		t.Errorf("unexpected example config: %+v", cfg)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "min.toml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"max_message_size", cfg.Server.MaxMessageSize, Size(35 << 20)},
		{"max_parts", cfg.Server.MaxParts, 10000},
		{"max_recipients", cfg.Server.MaxRecipients, 500},
		{"tls", cfg.Listeners[0].TLS, TLSNone},
		{"protocol", cfg.Listeners[0].Protocol, ProtocolSMTP},
		{"min_tls_version", cfg.Listeners[0].MinTLSVersion, "1.2"},
		{"mailbox_concurrency", cfg.Queue.MailboxConcurrency, 4},
		{"max_age", cfg.Queue.MaxAge.D(), 48 * time.Hour},
		{"queue.dir", cfg.Queue.Dir, "./spool"},
		{"workers", cfg.Queue.Workers, 16},
		{"min_backoff", cfg.Queue.MinBackoff.D(), time.Minute},
		{"max_backoff", cfg.Queue.MaxBackoff.D(), time.Hour},
		{"min_probe_interval", cfg.Queue.MinProbeInterval.D(), 30 * time.Second},
		{"max_probe_interval", cfg.Queue.MaxProbeInterval.D(), 5 * time.Minute},
		{"hostname", cfg.Server.Hostname != "", true},
		{"allowed_senders", strings.Join(cfg.Networks[0].AllowedSenders, ","), "noreply@example.com"},
		{"prefix", cfg.Networks[0].Prefixes[0].String(), "127.0.0.1/32"},
		{"bounce", cfg.Queue.BounceEnabled(), true},
		{"log.subjects", cfg.Log.Subjects, false},
		{"log.trace_days", cfg.Log.TraceDays, 30},
		{"log.trace", cfg.Log.TraceEnabled(), true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name, config string
		want         []string // each must appear in the error text
	}{
		{"negative trace_days", minimal + "\n[log]\ntrace_days = -1\n", []string{"x.toml:13: log.trace_days: must be a number of days, not -1"}},
		{"unknown key", minimal + "\n[server]\nhostnme = \"x\"\n", []string{"x.toml:13: server.hostnme: unknown key"}},
		{"unknown key in array table", strings.Replace(minimal, `address = "127.0.0.1:2525"`, "address = \"127.0.0.1:2525\"\ntls_mode = \"none\"", 1), []string{"x.toml:4: listener[0].tls_mode: unknown key"}},
		{"wrong type", "[server]\nmax_recipients = \"500\"\n" + minimal, []string{"x.toml:2: server.max_recipients: is a string (in quotes), but must be an integer"}},
		{"bad size", "[server]\nmax_message_size = \"lots\"\n" + minimal, []string{`x.toml:2: server.max_message_size`, "invalid size"}},
		{"syntax", "[server\n", []string{"x.toml:2:", "end table name"}},
		{"bad tls mode", strings.Replace(minimal, `address = "127.0.0.1:2525"`, "address = \"127.0.0.1:2525\"\ntls = \"ssl\"", 1), []string{`x.toml:4: listener[0].tls: must be none, starttls or implicit, not "ssl"`}},
		{"no target", strings.Replace(minimal, "[outbox]\ndir = \"out\"", "", 1), []string{"graph: one of [graph] and [outbox] is required"}},
		{"bad cidr", strings.Replace(minimal, `"127.0.0.1"]`, `"10.0.0.0/33"]`, 1), []string{`x.toml:9: network[0].cidrs: "10.0.0.0/33" is not an address or CIDR`}},
		{"bad hash", minimal + "\n[[user]]\nusername = \"mfp\"\npassword_hash = \"plain\"\nmailbox = \"a@example.com\"\n", []string{"x.toml:14: user[0].password_hash: must be a bcrypt hash"}},
		{"negative max_parts", minimal + "\n[server]\nmax_parts = -1\n", []string{"x.toml:13: server.max_parts: must be positive"}},
		{"concurrency", minimal + "\n[queue]\nmailbox_concurrency = 8\n", []string{"x.toml:13: queue.mailbox_concurrency: must be 1 to 4"}},
		{"negative concurrency", minimal + "\n[queue]\nmailbox_concurrency = -1\n", []string{"x.toml:13: queue.mailbox_concurrency: must be 1 to 4"}},
		{"negative workers", minimal + "\n[queue]\nworkers = -1\n", []string{"x.toml:13: queue.workers: must be at least 1"}},
		{"negative duration", minimal + "\n[queue]\nmax_age = \"-1h\"\n", []string{"x.toml:13: queue.max_age", "invalid duration"}},
		{"backoff order", minimal + "\n[queue]\nmin_backoff = \"10m\"\nmax_backoff = \"5m\"\n", []string{"x.toml:13: queue.min_backoff: is longer than max_backoff (5m0s)"}},
		{"backoff over default", minimal + "\n[queue]\nmin_backoff = \"2h\"\n", []string{"x.toml:13: queue.min_backoff: is longer than max_backoff (1h0m0s)"}},
		{"probe order", minimal + "\n[queue]\nmin_probe_interval = \"2m\"\nmax_probe_interval = \"1m\"\n", []string{"x.toml:13: queue.min_probe_interval: is longer than max_probe_interval (1m0s)"}},
		{"probe over default", minimal + "\n[queue]\nmin_probe_interval = \"10m\"\n", []string{"x.toml:13: queue.min_probe_interval: is longer than max_probe_interval (5m0s)"}},
		{"bad protocol", strings.Replace(minimal, `address = "127.0.0.1:2525"`, "address = \"127.0.0.1:2525\"\nprotocol = \"pop\"", 1), []string{`x.toml:4: listener[0].protocol: must be smtp, imap or pop3, not "pop"`}},
		{"imap without graph", strings.Replace(minimal, `address = "127.0.0.1:2525"`, "address = \"127.0.0.1:2525\"\nprotocol = \"imap\"", 1), []string{`x.toml:4: listener[0].protocol: imap needs the [graph] app credential`}},
		{"user with no right", minimal + "\n[[user]]\nusername = \"app\"\npassword_hash = \"" + testHash + "\"\n", []string{"user[0].mailbox: a user without mailbox", "or read_mailbox"}},
		{"bad read_mailbox", minimal + "\n[[user]]\nusername = \"app\"\npassword_hash = \"" + testHash + "\"\nread_mailbox = \"helpdesk\"\n", []string{`x.toml:15: user[0].read_mailbox: must be a mailbox address like helpdesk@example.com, not "helpdesk"`}},
		{"bad client_secret_expires", strings.Replace(minimal, "[outbox]\ndir = \"out\"", "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\nclient_secret_expires = \"30/06/2027\"", 1), []string{`x.toml:8: graph.client_secret_expires`, "invalid date"}},
		{"client_secret_expires without a secret", strings.Replace(minimal, "[outbox]\ndir = \"out\"", "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\nmanaged_identity = true\nclient_secret_expires = 2027-06-30", 1), []string{`x.toml:9: graph.client_secret_expires: is the expiry of a client secret, but the credential is not one`}},
		{"graph credential", strings.Replace(minimal, "[outbox]\ndir = \"out\"", "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\nendpoint = \"http://graph\"", 1), []string{"graph: no credential", `graph.endpoint: must be an https URL`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(ClientSecretEnv, "")
			_, err := Parse([]byte(tt.config), "x.toml")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// client_secret_expires is a day, written as a TOML date or as a string.
func TestClientSecretExpires(t *testing.T) {
	t.Setenv(ClientSecretEnv, "from-the-environment")
	want := time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)
	for _, value := range []string{`2027-06-30`, `"2027-06-30"`} {
		cfg, err := Parse([]byte(strings.Replace(minimal, "[outbox]\ndir = \"out\"",
			"[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\nclient_secret_expires = "+value, 1)), "x.toml")
		if err != nil {
			t.Fatalf("%s: %v", value, err)
		}
		if got := cfg.Graph.ClientSecretExpires.Time; !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("client_secret_expires = %s: loaded %v, want %v", value, got, want)
		}
	}
}

// A user may only read: read_mailbox without mailbox or allowed_senders.
func TestReadOnlyUser(t *testing.T) {
	cfg, err := Parse([]byte(minimal+`
[[user]]
username = "helpdesk-app"
password_hash = "`+testHash+`"
read_mailbox = "helpdesk@example.com"
`), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Users[0]
	if u.ReadMailbox != "helpdesk@example.com" || u.Mailbox != "" || len(u.AllowedSenders) != 0 {
		t.Errorf("user = %+v, want a reader with no sending right", u)
	}
}

func TestUnknownKeyOncePerOccurrence(t *testing.T) {
	users := `
[[user]]
username = "a"
password_hash = '` + testHash + `'
mailbox = "a@example.com"

[[user]]
username = "b"
password_hash = '` + testHash + `'
mailbx = "b@example.com"

[[user]]
username = "c"
password_hash = '` + testHash + `'
mailbox = "c@example.com"
mailbx = "c@example.com"
`
	_, err := Parse([]byte(minimal+users), "x.toml")
	var problems Errors
	if !errors.As(err, &problems) {
		t.Fatalf("error %v is not Errors", err)
	}
	var got []string
	for _, p := range problems {
		if p.Msg == "unknown key" {
			got = append(got, p.String())
		}
	}
	want := []string{"x.toml:20: user[1].mailbx: unknown key", "x.toml:26: user[2].mailbx: unknown key"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unknown keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseQueueIgnoresTheRest(t *testing.T) {
	// A credential file the admin cannot read must not stop queue commands.
	config := strings.Replace(minimal, "[outbox]\ndir = \"out\"", "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"x\"\nclient_secret_file = \"/nonexistent\"", 1) +
		"\n[queue]\ndir = \"/var/spool/smtpgw\"\nmax_age = \"3d\"\n"
	q, err := ParseQueue([]byte(config), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if q.Dir != "/var/spool/smtpgw" || q.MaxAge.D() != 72*time.Hour || q.Workers != defaultWorkers {
		t.Errorf("queue = %+v", q)
	}
	if _, err := ParseQueue([]byte(config+"workerz = 3\n"), "x.toml"); err == nil || !strings.Contains(err.Error(), "queue.workerz: unknown key") {
		t.Errorf("unknown [queue] key: %v", err)
	}
}

func TestParseTraceReadsTraceSwitch(t *testing.T) {
	for _, c := range []struct {
		log  string
		want bool
	}{{"", true}, {"\n[log]\ntrace = true\n", true}, {"\n[log]\ntrace = false\nlevel = \"debug\"\n", false}} {
		config := minimal + "\n[queue]\ndir = \"/var/spool/smtpgw\"\n" + c.log
		q, on, err := ParseTrace([]byte(config), "x.toml")
		if err != nil || q.Dir != "/var/spool/smtpgw" || on != c.want {
			t.Errorf("ParseTrace with %q = %q, %v, %v; want trace %v", c.log, q.Dir, on, err, c.want)
		}
		cfg, err := Parse([]byte(config), "x.toml")
		if err != nil || cfg.Log.TraceEnabled() != c.want {
			t.Errorf("Parse with %q: trace %v, %v; want %v", c.log, err == nil && cfg.Log.TraceEnabled(), err, c.want)
		}
	}
	if _, _, err := ParseTrace([]byte(minimal+"\n[log]\ntrace = \"no\"\n"), "x.toml"); err == nil || !strings.Contains(err.Error(), "x.toml:") {
		t.Errorf("trace = \"no\": %v, want an error naming the line", err)
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	config := `
[server]
max_recipients = -1
colour = "blue"

[[listener]]
address = "nowhere"
tls = "ssl"

[outbox]
dir = "out"
`
	_, err := Parse([]byte(config), "x.toml")
	var problems Errors
	if !errors.As(err, &problems) {
		t.Fatalf("error %v is not Errors", err)
	}
	if len(problems) < 5 {
		t.Errorf("want at least 5 problems, got %d:\n%v", len(problems), err)
	}
}

func TestClientSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(path, []byte("s3cret\n"), 0o600)
	t.Setenv(ClientSecretEnv, "from-env")

	got, err := (&Graph{ClientSecretFile: path}).ClientSecret()
	if err != nil || got != "s3cret" {
		t.Errorf("from file: %q, %v", got, err)
	}
	got, err = (&Graph{}).ClientSecret()
	if err != nil || got != "from-env" {
		t.Errorf("from env: %q, %v", got, err)
	}
	t.Setenv(ClientSecretEnv, "")
	if _, err := (&Graph{ClientSecretFile: path + ".missing"}).ClientSecret(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSizeAndDuration(t *testing.T) {
	for in, want := range map[string]Size{"35MiB": 35 << 20, "10MB": 10e6, "512KiB": 512 << 10, "1000": 1000, "1GiB": 1 << 30} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("Size(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "48h": 48 * time.Hour, "2d": 48 * time.Hour} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("Duration(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
}

func TestLimitsAndPolicy(t *testing.T) {
	cfg, err := Parse([]byte(minimal+`
connections_per_address = 200
header_from = "reject"
allowed_recipients = ["*@contoso.com"]
messages_per_minute = 30

[limits]
max_errors = 5
error_delay = "10ms"
`), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	n, l := cfg.Networks[0], cfg.Limits
	if n.ConnectionsPerAddress != 200 || n.ConnectionsPerMinute != 0 || n.HeaderFrom != HeaderFromReject ||
		n.AllowedRecipients[0] != "*@contoso.com" || n.MessagesPerMinute != 30 || n.RecipientsPerDay != 0 {
		t.Errorf("network %+v", n)
	}
	if l.MaxErrors != 5 || l.ErrorDelay.D() != 10*time.Millisecond || l.ConnectionsPerAddress != 20 ||
		l.ConnectionsPerMinute != 60 || l.ErrorsBeforeDelay != 3 || l.SessionLifetime.D() != 30*time.Minute ||
		l.IdleTimeout.D() != 5*time.Minute || l.AuthFailures != 10 || l.AuthFailureWindow.D() != 15*time.Minute ||
		l.AuthMinDuration.D() != 400*time.Millisecond || l.AuthWorkers < 2 {
		t.Errorf("limits %+v", l)
	}
	if cfg.Queue.MinFreeSpace != 1<<30 || cfg.Queue.FailedMaxAge.D() != 30*24*time.Hour {
		t.Errorf("queue %+v", cfg.Queue)
	}

	_, err = Parse([]byte(minimal+"header_from = \"drop\"\nallowed_recipients = [\"nobody\"]\n\n[limits]\nmax_errors = -1\n"), "x.toml")
	for _, want := range []string{
		`x.toml:11: network[0].header_from: must be rewrite or reject, not "drop"`,
		`x.toml:12: network[0].allowed_recipients: "nobody" is neither an address nor *@domain`,
		`x.toml:15: limits.max_errors: must be at least 1`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

func TestWeakHashWarning(t *testing.T) {
	cfg, err := Parse([]byte(minimal+"\n[[user]]\nusername = \"mfp\"\npassword_hash = \""+testHash+"\"\nmailbox = \"a@example.com\"\n"), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], `user "mfp": password_hash has bcrypt cost 4, below 10`) {
		t.Errorf("warnings %q", cfg.Warnings)
	}
	if w := WeakHashWarning("$2a$10$" + strings.Repeat("a", 53)); w != "" {
		t.Errorf("cost 10: %q", w)
	}
}
