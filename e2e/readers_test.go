package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/dovecottest"
	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

const (
	readMailbox   = "helpdesk@contoso.com"
	deniedMailbox = "billing@contoso.com"  // exists; the app is not granted it
	readPassword  = "reader \"s3cret\" pw" // a space and quotes: every quoting path
)

// readers is a gateway with IMAP and POP3 listeners in front of a Dovecot
// standing in for Exchange Online.
type readers struct {
	g    *gateway
	d    *dovecottest.Server
	fake *graphtest.Server
	// secretFile holds the app's client secret, which a test may change.
	secretFile string
	// Listener addresses, in the order of readersConfig.
	imapTLS, imapStartTLS, imapPlain, pop3TLS, pop3StartTLS string
}

func startReaders(t testing.TB, scope string) *readers {
	t.Helper()
	return startReadersWithSecret(t, scope, "")
}

// startReadersWithSecret is startReaders with secret in the client secret
// file instead of the one the fake Entra ID accepts, unless it is empty.
func startReadersWithSecret(t testing.TB, scope, secret string) *readers {
	t.Helper()
	fake := graphtest.New(t)
	d := dovecottest.Start(t, fake)
	d.Grant(t, readMailbox)
	d.AddMailbox(t, deniedMailbox)
	dir := t.TempDir()
	secretFile := fake.WriteSecretFile(dir)
	if secret != "" {
		if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The password is hashed as admins hash it, at hash-password's cost,
	// and [limits] keeps its defaults: the login benchmark measures what
	// an installation gets.
	hashCmd := exec.Command(binary, "hash-password")
	hashCmd.Stdin = strings.NewReader(readPassword + "\n")
	out, err := hashCmd.Output()
	if err != nil {
		t.Fatalf("hash-password: %v", err)
	}
	hash := strings.TrimSpace(string(out))
	config := fmt.Sprintf(`
[[listener]]
address = "127.0.0.1:0"
protocol = "imap"
tls = "implicit"

[[listener]]
address = "127.0.0.1:0"
protocol = "imap"
tls = "starttls"

[[listener]]
address = "127.0.0.1:0"
protocol = "imap"
allow_insecure_auth = true

[[listener]]
address = "127.0.0.1:0"
protocol = "pop3"
tls = "implicit"

[[listener]]
address = "127.0.0.1:0"
protocol = "pop3"
tls = "starttls"

[queue]
dir = %q

[exchange]
imap_address = %q
pop3_address = %q
scope = %q

[[user]]
username = "helpdesk-app"
password_hash = %q
read_mailbox = %q

[[user]]
username = "billing-app"
password_hash = %q
read_mailbox = %q

[metrics]
address = "127.0.0.1:0"

%s`, filepath.Join(dir, "spool"), d.IMAPAddress, d.POP3Address, scope, hash, readMailbox, hash, deniedMailbox, fake.GraphTOMLWithSecretFile(secretFile))
	// The gateway trusts the fake Entra ID and the Dovecot certificate.
	caFile := filepath.Join(dir, "ca.pem")
	fakeCA, _ := os.ReadFile(fake.WriteCAFile(dir))
	dovecotCA, _ := os.ReadFile(d.WriteCAFile(dir))
	if err := os.WriteFile(caFile, append(fakeCA, dovecotCA...), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, dir, config, "SSL_CERT_FILE="+caFile)
	if len(g.Addr) != 5 {
		t.Fatalf("listeners %v", g.Addr)
	}
	return &readers{g: g, d: d, fake: fake, secretFile: secretFile,
		imapTLS: g.Addr[0], imapStartTLS: g.Addr[1], imapPlain: g.Addr[2], pop3TLS: g.Addr[3], pop3StartTLS: g.Addr[4]}
}

// python runs a Python script with the gateway's addresses in its
// environment and returns its output.
func (r *readers) python(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command("python3", "-c", script)
	cmd.Env = append(os.Environ(), "IMAP_TLS="+r.imapTLS, "IMAP_STARTTLS="+r.imapStartTLS, "IMAP_PLAIN="+r.imapPlain,
		"POP3_TLS="+r.pop3TLS, "POP3_STARTTLS="+r.pop3StartTLS, "PASSWORD="+readPassword)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s\ngateway log:\n%s", err, out, r.g.logs)
	}
	return strings.TrimSpace(string(out))
}

// pythonPrelude connects as the scripts need: the gateway's certificate is
// its own self-signed one, which these clients are told to accept.
const pythonPrelude = `
import hashlib, imaplib, os, poplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def hostport(name):
    host, port = os.environ[name].rsplit(":", 1)
    return host, int(port)
`

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func testMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: " + readMailbox + "\r\nSubject: test\r\nMessage-ID: <" + fmt.Sprint(size) + "@example.com>\r\n\r\n")
	line := "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// Python's imaplib and poplib read the message byte for byte as stored,
// over every listener mode, and UIDL stays the same across sessions.
func TestReadersPythonClients(t *testing.T) {
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	raw := testMessage(4000)
	r.d.AddMessage(t, readMailbox, raw)
	out := r.python(t, pythonPrelude+`
def imap_fetch(m):
    m.login("helpdesk-app", os.environ["PASSWORD"])
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    print(hashlib.sha256(data[0][1]).hexdigest())
    m.logout()
imap_fetch(imaplib.IMAP4_SSL(*hostport("IMAP_TLS"), ssl_context=ctx))
m = imaplib.IMAP4(*hostport("IMAP_STARTTLS")); m.starttls(ssl_context=ctx); imap_fetch(m)
imap_fetch(imaplib.IMAP4(*hostport("IMAP_PLAIN")))
def pop_fetch(p):
    p.user("helpdesk-app"); p.pass_(os.environ["PASSWORD"])
    resp, lines, octets = p.retr(1)
    print(hashlib.sha256(b"\r\n".join(lines) + b"\r\n").hexdigest())
    print(p.uidl(1).decode())
    p.quit()
pop_fetch(poplib.POP3_SSL(*hostport("POP3_TLS"), context=ctx))
p = poplib.POP3(*hostport("POP3_STARTTLS")); p.stls(context=ctx); pop_fetch(p)
`)
	lines := strings.Split(out, "\n")
	want := sha(raw)
	if len(lines) != 7 || lines[0] != want || lines[1] != want || lines[2] != want || lines[3] != want || lines[5] != want {
		t.Fatalf("got\n%s\nwant the message's sha256 %s five times", out, want)
	}
	if lines[4] != lines[6] || !strings.HasPrefix(lines[4], "+OK 1 ") {
		t.Errorf("UIDL changed between sessions: %q, %q", lines[4], lines[6])
	}
	// One token for every session.
	if n := r.fake.TokenRequests(); n != 1 {
		t.Errorf("%d token requests for 5 sessions, want 1", n)
	}
	r.g.Stop()
	logs := r.g.logs.String()
	if strings.Contains(logs, "s3cret") || strings.Contains(logs, "abcdefghijklmnopqrstuvwxyz") {
		t.Errorf("the log holds a password or message content:\n%s", logs)
	}
	if n := strings.Count(logs, `login=ok`); n != 5 {
		t.Errorf("%d sessions logged in, want 5:\n%s", n, logs)
	}
}

// curl's imaps:// and pop3s:// read the message as stored.
func TestReadersCurl(t *testing.T) {
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	raw := testMessage(2000)
	r.d.AddMessage(t, readMailbox, raw)
	for _, url := range []string{"imaps://" + r.imapTLS + "/INBOX;UID=1", "pop3s://" + r.pop3TLS + "/1"} {
		out, err := exec.Command("curl", "-sSk", "--max-time", "20", "-u", "helpdesk-app:"+readPassword, url).Output()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, r.g.logs)
		}
		if !bytes.Equal(out, raw) {
			t.Errorf("curl %s: %d bytes, want the %d stored", url, len(out), len(raw))
		}
	}
}

// fetchmail collects the message over POP3 into an MDA that stores it.
func TestReadersFetchmail(t *testing.T) {
	if _, err := exec.LookPath("fetchmail"); err != nil {
		t.Skip("fetchmail is not installed")
	}
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	raw := testMessage(3000)
	r.d.AddMessage(t, readMailbox, raw)
	dir := t.TempDir()
	host, port, _ := strings.Cut(r.pop3TLS, ":")
	rc := filepath.Join(dir, "fetchmailrc")
	stored := filepath.Join(dir, "stored")
	os.WriteFile(rc, []byte(fmt.Sprintf("poll %s protocol POP3 port %s user \"helpdesk-app\" password '%s' ssl no sslcertck keep mda \"cat > %s\"\n",
		host, port, readPassword, stored)), 0o600)
	cmd := exec.Command("fetchmail", "-f", rc, "--nosyslog", "-d0", "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetchmail: %v\n%s\n%s", err, out, r.g.logs)
	}
	got, _ := os.ReadFile(stored)
	// fetchmail adds its Received line and writes LF line ends.
	if !bytes.Contains(got, bytes.ReplaceAll(raw[bytes.Index(raw, []byte("\r\n\r\n"))+4:], []byte("\r\n"), []byte("\n"))) {
		t.Errorf("fetchmail stored %d bytes without the message's body", len(got))
	}
}

// getmail retrieves the message over POP3 and over IMAP, each with its
// own state directory so both fetch it, into an MDA that stores it (its
// maildir delivery refuses to run as root, as CI does).
func TestReadersGetmail(t *testing.T) {
	if _, err := exec.LookPath("getmail"); err != nil {
		t.Skip("getmail is not installed")
	}
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	raw := testMessage(3000)
	r.d.AddMessage(t, readMailbox, raw)
	// getmail hands the message on with LF line ends, after the
	// Return-Path it always writes (the message has none).
	want := append([]byte("Return-Path: <unknown>\n"), bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))...)
	for _, tc := range []struct{ retriever, address string }{
		{"SimplePOP3SSLRetriever", r.pop3TLS},
		{"SimpleIMAPSSLRetriever", r.imapTLS},
	} {
		dir := t.TempDir()
		stored := filepath.Join(dir, "stored")
		host, port, _ := strings.Cut(tc.address, ":")
		// The gateway's certificate is self-signed: getmail checks none
		// unless told ca_certs.
		rc := fmt.Sprintf(`[retriever]
type = %s
server = %s
port = %s
username = helpdesk-app
password = %s
record_mailbox = false

[destination]
type = MDA_external
path = /bin/sh
arguments = ("-c", "cat > %s")
unixfrom = false
allow_root_commands = true

[options]
read_all = true
delete = false
delivered_to = false
received = false
verbose = 0
`, tc.retriever, host, port, readPassword, stored)
		if err := os.WriteFile(filepath.Join(dir, "getmailrc"), []byte(rc), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("getmail", "--getmaildir", dir, "--rcfile", "getmailrc")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("getmail %s: %v\n%s\n%s", tc.retriever, err, out, r.g.logs)
		}
		got, _ := os.ReadFile(stored)
		if !bytes.Equal(got, want) {
			t.Errorf("getmail %s stored %d bytes, want the %d of the message:\n%.300s", tc.retriever, len(got), len(want), got)
		}
	}
}

// Literal LOGIN, IDLE that sees a new message, and the failures: each
// answered as the issue says.
func TestReadersIMAPConversation(t *testing.T) {
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	clientTLS := &tls.Config{InsecureSkipVerify: true}
	c := relaytest.Dial(t, r.imapTLS)
	c.StartTLS(clientTLS)
	c.Expect("* OK ")
	c.Send(fmt.Sprintf("a LOGIN {%d}\r\n", len("helpdesk-app")))
	c.Expect("+ ")
	c.Send(fmt.Sprintf("helpdesk-app {%d+}\r\n%s\r\n", len(readPassword), readPassword))
	c.Expect("a OK [CAPABILITY IMAP4rev1")
	c.Send("b SELECT INBOX\r\n")
	for !strings.HasPrefix(c.Expect(""), "b OK") {
	}
	c.Send("c IDLE\r\n")
	c.Expect("+ ")
	r.d.AddMessage(t, readMailbox, testMessage(100))
	c.Expect("* 1 EXISTS")
	c.Send("DONE\r\n")
	for !strings.HasPrefix(c.Expect(""), "c OK") {
	}

	c = relaytest.Dial(t, r.imapTLS)
	c.StartTLS(clientTLS)
	c.Expect("* OK ")
	c.Send("a LOGIN helpdesk-app wrong\r\n")
	c.Expect("a NO [AUTHENTICATIONFAILED]")
	c.Send("b LOGIN billing-app " + relaytest.Quote(readPassword) + "\r\n")
	c.Expect("b NO [UNAVAILABLE]")
	waitLog(t, r.g, "Add-MailboxPermission -Identity "+deniedMailbox, 1)

	r.d.Stop()
	c.Send("c LOGIN helpdesk-app " + relaytest.Quote(readPassword) + "\r\n")
	c.Expect("c NO [UNAVAILABLE]")
	waitLog(t, r.g, "login=upstream_unavailable", 1)
}

// Entra ID refusing the client secret to a reading login puts the gateway
// in the upstream-down state sending uses: one ERROR line with the AADSTS
// code and its explanation, /status and smtpgw_upstream_up, and the
// non-authentication answers. Once the admin fixes the secret file, the
// next login reads it, succeeds and ends the outage.
func TestReadersCredentialRefused(t *testing.T) {
	r := startReadersWithSecret(t, graphtest.ExchangeAudience+"/.default", "not-the-secret")
	login := func(tag, want string) {
		t.Helper()
		c := relaytest.Dial(t, r.imapTLS)
		c.StartTLS(&tls.Config{InsecureSkipVerify: true})
		c.Expect("* OK ")
		c.Send(tag + " LOGIN helpdesk-app " + relaytest.Quote(readPassword) + "\r\n")
		c.Expect(tag + " " + want)
	}
	login("a", "NO [UNAVAILABLE]")
	pop3 := relaytest.Dial(t, r.pop3TLS)
	pop3.StartTLS(&tls.Config{InsecureSkipVerify: true})
	pop3.Expect("+OK")
	pop3.Send("USER helpdesk-app\r\nPASS " + readPassword + "\r\n")
	pop3.Expect("+OK")
	pop3.Expect("-ERR [SYS/TEMP]")
	login("b", "NO [UNAVAILABLE]")

	metrics := r.g.MetricsURL()
	st := waitStatus(t, metrics, func(st status) bool { return !st.Upstream.Up })
	if st.Upstream.Down == nil || st.Upstream.Down.AADSTS != "AADSTS7000215" || !strings.Contains(st.Upstream.Down.Explanation, "client_secret_file") {
		t.Errorf("/status upstream = %+v", st.Upstream)
	}
	if _, body := httpGet(t, metrics+"/metrics"); !strings.Contains(body, "smtpgw_upstream_up 0") {
		t.Error("/metrics lacks smtpgw_upstream_up 0")
	}
	logs := r.g.logs.String()
	if n := strings.Count(logs, `level=ERROR msg="upstream down`); n != 1 || !strings.Contains(logs, "aadsts=AADSTS7000215") {
		t.Errorf("%d upstream-down lines for three refused logins, want 1 naming AADSTS7000215:\n%s", n, logs)
	}
	if strings.Contains(logs, "level=WARN") && strings.Contains(logs, "Exchange Online unavailable") {
		t.Errorf("a WARN line per login:\n%s", logs)
	}

	if err := os.WriteFile(r.secretFile, []byte(r.fake.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	login("c", "OK ")
	waitStatus(t, metrics, func(st status) bool { return st.Upstream.Up })
	waitLog(t, r.g, `level=ERROR msg="upstream up`, 1)
}

// A token expired when Exchange gets it is refused: answered as
// unavailable, never as a wrong password, with the clock named in the log;
// it is not cached, so once Entra ID issues good tokens again the next
// login gets a new one and succeeds.
func TestReadersExpiredToken(t *testing.T) {
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	r.fake.SetTokenLifetime(-time.Minute)
	imap := relaytest.Dial(t, r.imapTLS)
	imap.StartTLS(&tls.Config{InsecureSkipVerify: true})
	imap.Expect("* OK ")
	imap.Send("a LOGIN helpdesk-app " + relaytest.Quote(readPassword) + "\r\n")
	imap.Expect("a NO [UNAVAILABLE]")
	pop3 := relaytest.Dial(t, r.pop3TLS)
	pop3.StartTLS(&tls.Config{InsecureSkipVerify: true})
	pop3.Expect("+OK")
	pop3.Send("USER helpdesk-app\r\nPASS " + readPassword + "\r\n")
	pop3.Expect("+OK")
	pop3.Expect("-ERR [SYS/TEMP]")
	waitLog(t, r.g, "check that this host's clock is right", 2)
	if strings.Contains(r.g.logs.String(), "login=bad_credentials") {
		t.Error("an expired token was taken for a wrong password")
	}

	r.fake.SetTokenLifetime(time.Hour)
	before := r.fake.TokenRequests()
	imap = relaytest.Dial(t, r.imapTLS)
	imap.StartTLS(&tls.Config{InsecureSkipVerify: true})
	imap.Expect("* OK ")
	imap.Send("b LOGIN helpdesk-app " + relaytest.Quote(readPassword) + "\r\n")
	imap.Expect("b OK ")
	if r.fake.TokenRequests() == before {
		t.Error("the login after an expired token used a cached token")
	}
}

// A token for another audience (Graph's) is refused by Exchange: answered
// as unavailable, never as a wrong password, and the log names the step.
func TestReadersWrongAudience(t *testing.T) {
	r := startReaders(t, "https://graph.microsoft.com/.default")
	c := relaytest.Dial(t, r.pop3TLS)
	c.StartTLS(&tls.Config{InsecureSkipVerify: true})
	c.Expect("+OK")
	c.Send("USER helpdesk-app\r\nPASS " + readPassword + "\r\n")
	c.Expect("+OK")
	c.Expect("-ERR [SYS/TEMP]")
	waitLog(t, r.g, "POP.AccessAsApp", 1)
}

// A 30 MB message arrives whole and unchanged.
func TestReadersLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("30 MB through Dovecot and the gateway")
	}
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	raw := testMessage(30 << 20)
	r.d.AddMessage(t, readMailbox, raw)
	out := r.python(t, pythonPrelude+`
m = imaplib.IMAP4_SSL(*hostport("IMAP_TLS"), ssl_context=ctx)
m.login("helpdesk-app", os.environ["PASSWORD"])
m.select("INBOX", readonly=True)
typ, data = m.fetch("1", "(BODY.PEEK[])")
print(hashlib.sha256(data[0][1]).hexdigest())
m.logout()
`)
	if out != sha(raw) {
		t.Errorf("got %s, want %s", out, sha(raw))
	}
}

// check -read-test logs in upstream over IMAP and POP3 and says what is
// missing for a mailbox the app was not granted.
func TestCheckReadTest(t *testing.T) {
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	config := filepath.Join(r.g.dir, "smtpgw.toml")
	caFile := filepath.Join(r.g.dir, "ca.pem")
	run := func(mailbox string) (string, error) {
		cmd := exec.Command(binary, "check", "-config", config, "-read-test", mailbox)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(readMailbox)
	if err != nil || !strings.Contains(out, "imap login to "+r.d.IMAPAddress+" as "+readMailbox+": OK") || !strings.Contains(out, "pop3 login to "+r.d.POP3Address+" as "+readMailbox+": OK") {
		t.Errorf("check -read-test %s: %v\n%s", readMailbox, err, out)
	}
	out, err = run(deniedMailbox)
	if err == nil || !strings.Contains(out, "Add-MailboxPermission -Identity "+deniedMailbox+" -User "+r.fake.ServicePrincipalID()) {
		t.Errorf("check -read-test %s: %v\n%s", deniedMailbox, err, out)
	}
}

// A reload gives a user another read_mailbox: the next session opens it.
func TestReadersReloadReadMailbox(t *testing.T) {
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	path := filepath.Join(r.g.dir, "smtpgw.toml")
	config, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// billing-app's mailbox becomes the granted one.
	updated := strings.Replace(string(config), "read_mailbox = \""+deniedMailbox+"\"", "read_mailbox = \""+readMailbox+"\"", 1)
	if err := os.WriteFile(path, []byte(updated), 0o600); err != nil {
		t.Fatal(err)
	}
	r.g.reload(t, 1)
	c := relaytest.Dial(t, r.imapTLS)
	c.StartTLS(&tls.Config{InsecureSkipVerify: true})
	c.Expect("* OK ")
	c.Send("a LOGIN billing-app " + relaytest.Quote(readPassword) + "\r\n")
	c.Expect("a OK ")
}
