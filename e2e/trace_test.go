package e2e

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// runTrace runs `smtpgw trace` on the configuration in dir.
func runTrace(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := traceOutput(dir, args...)
	if err != nil {
		t.Fatalf("smtpgw trace %v: %v\n%s", args, err, out)
	}
	return out
}

func traceOutput(dir string, args ...string) (string, error) {
	out, err := exec.Command(binary, append([]string{"trace", "-config", filepath.Join(dir, "smtpgw.toml")}, args...)...).CombinedOutput()
	return string(out), err
}

// waitTrace runs `smtpgw trace` until its output holds every one of want:
// the gateway writes the trace within a second.
func waitTrace(t *testing.T, dir string, args []string, want ...string) string {
	t.Helper()
	var out string
	holds := func() bool {
		var err error
		if out, err = traceOutput(dir, args...); err != nil {
			return false
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return false
			}
		}
		return true
	}
	waitFor(t, deliveryTimeout, holds)
	return out
}

// TestTraceFindsDeliveredAndDeadLettered is the admin's question "where did
// my scan go?": one message delivered and one dead-lettered are found by
// recipient with their client, identity, outcome and Graph's request-id,
// and -id shows every event; the same once the gateway stopped, after the
// dead letter is deleted from the spool, and after a restart.
func TestTraceFindsDeliveredAndDeadLettered(t *testing.T) {
	fake := graphtest.New(t)
	dir := t.TempDir()
	config := gatewayConfig(t, dir, fake.GraphTOML(t))
	caEnv := "SSL_CERT_FILE=" + fake.WriteCAFile(dir)
	g := startGateway(t, dir, config, caEnv)

	delivered := mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"Bob@contoso.com"},
		Body: "Message-ID: <scan-1@mfp.contoso.com>\nSubject: scan 1\n\npage 1\n"})
	requestID := fake.WaitSent(t, 1, deliveryTimeout)[0].RequestID
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: 404, Code: "ErrorInvalidUser", Message: "The mailbox does not exist."})
	failed := mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"carol@contoso.com"},
		Body: "Message-ID: <scan-2@mfp.contoso.com>\nSubject: scan 2\n\npage 2\n"})
	fake.WaitSent(t, 2, deliveryTimeout) // the bounce to scanner@
	waitTrace(t, dir, []string{"-id", failed}, "bounced")

	check := func(when string) {
		t.Helper()
		out := runTrace(t, dir, "-to", "bob@contoso.com")
		for _, want := range []string{delivered, "delivered", "127.0.0.1:", "network:127.0.0.1/32", "<scanner@contoso.com>", requestID, "1 message(s)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: trace -to bob@ lacks %q:\n%s", when, want, out)
			}
		}
		out = runTrace(t, dir, "-to", "*@contoso.com", "-state", "failed")
		if !strings.Contains(out, failed) || strings.Contains(out, delivered) || !strings.Contains(out, "1 message(s)") {
			t.Errorf("%s: trace -state failed:\n%s", when, out)
		}
		out = runTrace(t, dir, "-id", failed)
		for _, want := range []string{"State:       failed", "Message-ID:  <scan-2@mfp.contoso.com>", "accepted", "failed  attempt 1  reference ", "ErrorInvalidUser", "bounced"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: trace -id lacks %q:\n%s", when, want, out)
			}
		}
		if strings.Contains(out, "scan 2") {
			t.Errorf("%s: the subject is traced without [log] subjects = true:\n%s", when, out)
		}
	}
	check("while running")
	if logs := g.logs.String(); !strings.Contains(logs, "msg=accepted") || !strings.Contains(logs, "to=Bob@contoso.com") ||
		!strings.Contains(logs, "message_id=<scan-1@mfp.contoso.com>") || !strings.Contains(logs, "reference="+requestID) {
		t.Errorf("log lines lack sender, recipients, Message-ID or Graph's request-id:\n%s", logs)
	}
	g.Stop()
	check("after stopping")
	if out, err := exec.Command(binary, "queue", "delete", failed, "-config", filepath.Join(dir, "smtpgw.toml")).CombinedOutput(); err != nil {
		t.Fatalf("queue delete: %v\n%s", err, out)
	}
	startGateway(t, dir, config, caEnv)
	check("after a restart, with the spool's copies gone")
}

// TestTraceOff runs a gateway with [log] trace = false: mail flows, no
// trace is written, and `smtpgw trace` says the trace is off rather than
// finding nothing.
func TestTraceOff(t *testing.T) {
	fake := graphtest.New(t)
	dir := t.TempDir()
	config := gatewayConfig(t, dir, fake.GraphTOML(t)) + "\n[log]\ntrace = false\n"
	g := startGateway(t, dir, config, "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"bob@contoso.com"}, Body: "Subject: scan\n\npage 1\n"})
	fake.WaitSent(t, 1, deliveryTimeout)
	g.Stop() // a trace writer would have flushed by now

	if entries, err := os.ReadDir(filepath.Join(dir, "spool", "trace")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("trace folder with [log] trace = false: %v, %v", entries, err)
	}
	out, err := traceOutput(dir, "-to", "bob@contoso.com")
	if err == nil || !strings.Contains(out, "the message trace is off ([log] trace = false") {
		t.Errorf("smtpgw trace with the trace off: %v\n%s", err, out)
	}
}
