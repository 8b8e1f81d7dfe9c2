package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/testtools"
)

// The side-by-side with Postfix: 2,000 messages of 10 KB over 20 sessions,
// all to one mailbox, sent by Postfix's own smtp-source to each, timed
// until the last message has left. Postfix relays through its queue to
// smtp-sink; the gateway through its spool to a fake Graph that answers at
// once and, like smtp-sink, counts what it is sent without keeping it
// (graphtest.Counting), never with more than 4 calls in flight for the
// mailbox.
const (
	sideMessages = 2000
	sideSessions = 20
	sideSize     = 10 * 1024
	drainTimeout = 10 * time.Minute
)

// Postfix's programs, where Debian's postfix package puts them.
const (
	postfixCommand = "/usr/sbin/postfix"
	smtpSource     = "/usr/sbin/smtp-source"
	smtpSink       = "/usr/sbin/smtp-sink"
)

// BenchmarkVersusPostfix reports the gateway's and Postfix's messages per
// second in one run, and their ratio. It also runs the gateway without the
// message trace ([log] trace = false) and reports what writing the trace
// costs: intake throughput (until smtp-source has every 250) with and
// without it, and CPU per message. Without Postfix installed (make bench
// installs it) it is skipped, unless CI is "true".
func BenchmarkVersusPostfix(b *testing.B) {
	for _, p := range []string{postfixCommand, smtpSource, smtpSink} {
		testtools.Require(b, p, "apt-get install postfix")
	}
	// Two rounds, interleaved, best of each: the machine is shared, and a
	// burst of load from elsewhere should not decide the ratio. The
	// gateway runs with and without the trace in turn, in either order.
	var traced, untraced sideRun
	var postfix float64
	for round := range 2 {
		for _, withTrace := range []bool{round == 0, round != 0} {
			if withTrace {
				traced = traced.best(gatewayRun(b, true))
			} else {
				untraced = untraced.best(gatewayRun(b, false))
			}
		}
		postfix = max(postfix, postfixRate(b))
	}
	b.ReportMetric(traced.rate, "gateway-msgs/s")
	b.ReportMetric(postfix, "postfix-msgs/s")
	b.ReportMetric(traced.rate/postfix, "gateway/postfix")
	b.ReportMetric(float64(traced.cpu.Microseconds())/sideMessages, "gateway-CPU-us/msg")
	b.ReportMetric(traced.intake, "intake-msgs/s")
	b.ReportMetric(untraced.intake, "untraced-intake-msgs/s")
	b.ReportMetric(100*(1-traced.intake/untraced.intake), "trace-intake-cost-%")
	b.ReportMetric(float64(untraced.cpu.Microseconds())/sideMessages, "untraced-CPU-us/msg")
}

// sideRun is what one run of the side-by-side measured on the gateway:
// messages per second until the last has left, until the last 250, and
// the CPU time it spent on the whole run.
type sideRun struct {
	rate, intake float64
	cpu          time.Duration
}

// best keeps the best of each figure of r and o; a zero run has none.
func (r sideRun) best(o sideRun) sideRun {
	if r.cpu == 0 {
		return o
	}
	return sideRun{rate: max(r.rate, o.rate), intake: max(r.intake, o.intake), cpu: min(r.cpu, o.cpu)}
}

// gatewayRun drives the gateway with smtp-source as the 127.0.0.1
// network identity, mailbox noreply@contoso.com, with or without the
// message trace.
func gatewayRun(b *testing.B, traced bool) sideRun {
	fake := graphtest.New(b, graphtest.Counting())
	g := startForLoad(b, fake, traced)
	cpuBefore := procCPU(b, g)
	start := time.Now()
	runSMTPSource(b, g.Addr[0])
	intake := time.Since(start)
	fake.WaitSent(b, sideMessages, drainTimeout)
	took := time.Since(start)
	cpu := procCPU(b, g) - cpuBefore
	if peak := fake.PeakInFlight("noreply@contoso.com"); peak > 4 {
		b.Fatalf("%d Graph calls in flight for one mailbox, Graph allows 4", peak)
	}
	return sideRun{rate: sideMessages / took.Seconds(), intake: sideMessages / intake.Seconds(), cpu: cpu}
}

// postfixRate runs a private Postfix instance on loopback ports, relaying
// everything to smtp-sink, and times it until its queue is empty.
func postfixRate(b *testing.B) float64 {
	dir := b.TempDir()
	sinkAddr, smtpdAddr := freeLoopbackAddr(b), freeLoopbackAddr(b)
	sink := exec.Command(smtpSink, "-u", "postfix", sinkAddr, "256")
	if err := sink.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sink.Process.Kill(); sink.Wait() })

	confDir, queueDir, dataDir := filepath.Join(dir, "etc"), filepath.Join(dir, "queue"), filepath.Join(dir, "data")
	writeFile(b, filepath.Join(confDir, "main.cf"), postfixMainCF(dir, queueDir, dataDir, sinkAddr))
	writeFile(b, filepath.Join(confDir, "master.cf"), postfixMasterCF(smtpdAddr))
	// Postfix wants its queue owned by root, its data by its own user,
	// and the folders above them searchable by it.
	owner, err := user.Lookup("postfix")
	if err != nil {
		b.Fatal(err)
	}
	uid, _ := strconv.Atoi(owner.Uid)
	for _, d := range []string{queueDir, dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for _, d := range []string{dir, filepath.Dir(dir)} { // the two b.TempDir made
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Chown(dataDir, uid, -1); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(postfixCommand, "-c", confDir, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		b.Fatalf("postfix start: %v\n%s%s", err, out, log)
	}
	b.Cleanup(func() { exec.Command(postfixCommand, "-c", confDir, "stop").Run() })
	waitListening(b, smtpdAddr)

	start := time.Now()
	runSMTPSource(b, smtpdAddr)
	deadline := time.Now().Add(drainTimeout)
	for queued(queueDir, "maildrop", "incoming", "active", "deferred") > 0 {
		if deferred := queued(queueDir, "deferred"); deferred > 0 || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			b.Fatalf("Postfix did not relay everything (%d deferred):\n%s", deferred, log[max(0, len(log)-2000):])
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sideMessages / time.Since(start).Seconds()
}

// runSMTPSource sends the side-by-side load to addr: sideSessions
// sessions, each sending message after message on one connection.
func runSMTPSource(b *testing.B, addr string) {
	cmd := exec.Command(smtpSource, "-d", "-s", fmt.Sprint(sideSessions), "-m", fmt.Sprint(sideMessages),
		"-l", fmt.Sprint(sideSize), "-f", "scanner@contoso.com", "-t", "alice@contoso.com", addr)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("smtp-source %s: %v\n%s", addr, err, out)
	}
}

// postfixMainCF relays all mail from loopback to the sink, keeping its
// queue, data and log in dir. No DNS, no local delivery, loopback only.
func postfixMainCF(dir, queueDir, dataDir, sinkAddr string) string {
	sinkHost, sinkPort, _ := net.SplitHostPort(sinkAddr)
	return fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %s
data_directory = %s
maillog_file = %s
maillog_file_prefixes = %s
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [%s]:%s
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtp_tls_security_level = none
default_process_limit = 100
# Postfix's default, stated: 20 deliveries to the sink at once.
default_destination_concurrency_limit = 20
`, queueDir, dataDir, filepath.Join(dir, "maillog"), dir, sinkHost, sinkPort)
}

// postfixMasterCF runs smtpd on addr only, and the services a relay needs.
func postfixMasterCF(addr string) string {
	return addr + ` inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`
}

// queued counts the messages in the given queues of a Postfix instance.
func queued(queueDir string, queues ...string) int {
	n := 0
	for _, sub := range queues {
		filepath.WalkDir(filepath.Join(queueDir, sub), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
	}
	return n
}

// freeLoopbackAddr finds a free TCP port on 127.0.0.1.
func freeLoopbackAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(b *testing.B, addr string) {
	deadline := time.Now().Add(startupTimeout)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(b *testing.B, path, content string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}
