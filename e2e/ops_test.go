package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// outboxTarget is an [outbox] section under dir.
func outboxTarget(dir string) string {
	return fmt.Sprintf("[outbox]\ndir = %q\n", filepath.Join(dir, "outbox"))
}

// reload sends SIGHUP and waits for the n-th log line saying the reload
// ended, applied or refused.
func (g *gateway) reload(t *testing.T, n int) {
	t.Helper()
	g.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, startupTimeout, func() bool {
		return strings.Count(g.logs.String(), "configuration reloaded")+strings.Count(g.logs.String(), "reload refused") >= n
	})
}

// TestReloadAddsUser: a [[user]] added to the file logs in after SIGHUP,
// in the same process.
func TestReloadAddsUser(t *testing.T) {
	dir := t.TempDir()
	config := gatewayConfig(t, dir, outboxTarget(dir))
	g := startGateway(t, dir, config)
	newUser := submission{From: "copier@contoso.com", To: []string{"someone@example.com"}, Body: "Subject: after reload\n\nx\n",
		StartTLS: true, Username: "copier", Password: "copier-secret"}
	if _, err := submit(g.Addr[1], newUser); err == nil {
		t.Fatal("unknown user accepted before the reload")
	}

	hash, err := bcrypt.GenerateFromPassword([]byte("copier-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config += fmt.Sprintf("\n[[user]]\nusername = \"copier\"\npassword_hash = %q\nmailbox = \"copier@contoso.com\"\n", hash)
	if err := os.WriteFile(filepath.Join(dir, "smtpgw.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	g.reload(t, 1)
	mustSubmit(t, g.Addr[1], newUser)
	if strings.Contains(g.logs.String(), "reload refused") {
		t.Errorf("reload refused:\n%s", g.logs)
	}
}

// TestReloadInvalidKeepsConfig: a broken file on SIGHUP changes nothing,
// and every problem is logged.
func TestReloadInvalidKeepsConfig(t *testing.T) {
	dir := t.TempDir()
	config := gatewayConfig(t, dir, outboxTarget(dir))
	g := startGateway(t, dir, config)
	broken := strings.Replace(config, `mailbox = "scanner@contoso.com"`, "mailbx = \"scanner@contoso.com\"\nmax_age = 3", 1)
	if err := os.WriteFile(filepath.Join(dir, "smtpgw.toml"), []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	g.reload(t, 1)
	for _, want := range []string{"user[0].mailbx: unknown key", "user[0].max_age: unknown key"} {
		if !strings.Contains(g.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, g.logs)
		}
	}
	mustSubmit(t, g.Addr[1], submission{From: "scanner@contoso.com", To: []string{"someone@example.com"}, Body: "Subject: still here\n\nx\n",
		StartTLS: true, Username: "mfp", Password: "printer-secret"})
}

// TestConfigFileAsArgument: `smtpgw check FILE` and `smtpgw serve FILE`
// would quietly use the built-in example; they are refused.
func TestConfigFileAsArgument(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "smtpgw.toml")
	os.WriteFile(path, []byte(gatewayConfig(t, dir, outboxTarget(dir))), 0o600)
	for _, cmd := range []string{"check", "serve"} {
		c := exec.Command(binary, cmd, path)
		c.Dir = dir
		out, _ := c.CombinedOutput()
		if code := c.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "-config "+path) {
			t.Errorf("smtpgw %s FILE: exit %d, want 2 and a hint to use -config:\n%s", cmd, code, out)
		}
	}
}

// TestSecondGatewayOnSpool: a second serve on the same spool exits naming
// the process that holds it.
func TestSecondGatewayOnSpool(t *testing.T) {
	dir := t.TempDir()
	first := startGateway(t, dir, gatewayConfig(t, dir, outboxTarget(dir)))
	second := exec.Command(binary, "serve", "-config", filepath.Join(dir, "smtpgw.toml"))
	second.Dir = dir
	done := make(chan []byte, 1)
	go func() {
		out, _ := second.CombinedOutput()
		done <- out
	}()
	select {
	case out := <-done:
		pid := "process " + strconv.Itoa(first.cmd.Process.Pid)
		if second.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), pid) {
			t.Errorf("second gateway: exit %d, want non-zero naming %s:\n%s", second.ProcessState.ExitCode(), pid, out)
		}
	case <-time.After(startupTimeout):
		second.Process.Kill()
		t.Fatal("a second gateway started on the same spool")
	}
}

var metricsRE = regexp.MustCompile(`msg="metrics listening" address=(\S+)`)

// TestReadyWithGraphDown: with Entra ID and Graph unreachable the instance
// still takes mail, so /readyz and /healthz answer 200.
func TestReadyWithGraphDown(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "client-secret")
	os.WriteFile(secret, []byte("s3cret"), 0o600)
	graph := fmt.Sprintf("[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\n"+
		"client_secret_file = %q\nauthority_host = \"https://127.0.0.1:1/\"\nendpoint = \"https://127.0.0.1:1\"\n", secret) + withMetrics
	g := startGateway(t, dir, gatewayConfig(t, dir, graph))
	m := metricsRE.FindStringSubmatch(g.logs.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", g.logs)
	}
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"someone@example.com"}, Body: "Subject: queued\n\nx\n"})
	for _, path := range []string{"/readyz", "/healthz"} {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

// TestCheckSendTest: check -send-test reports per mailbox, in words, a
// mailbox outside the access policy.
func TestCheckSendTest(t *testing.T) {
	fake := graphtest.New(t)
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: 403, Code: "ErrorAccessDenied"})
	dir := t.TempDir()
	path := filepath.Join(dir, "smtpgw.toml")
	os.WriteFile(path, []byte(gatewayConfig(t, dir, fake.GraphTOML(t))), 0o600)
	cmd := exec.Command(binary, "check", "-config", path, "-send-test", "admin@contoso.com")
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"scanner@contoso.com: refused", "Test-ApplicationAccessPolicy -Identity scanner@contoso.com", "noreply@contoso.com: sent a test message to admin@contoso.com"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if sent := fake.Sent(); len(sent) != 1 || sent[0].Mailbox != "noreply@contoso.com" {
		t.Errorf("sent %+v, want one message through noreply@contoso.com", sent)
	}

	// A mailbox that does not exist is told apart from a refused one.
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: 404, Code: "ErrorInvalidUser"})
	cmd = exec.Command(binary, "check", "-config", path, "-send-test", "admin@contoso.com", "-mailbox", "scanner@contoso.com")
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	out, _ = cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "scanner@contoso.com: no such mailbox in the tenant (ErrorInvalidUser)") {
		t.Errorf("exit %d, want 1 naming the missing mailbox:\n%s", code, out)
	}
}
