package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// status is what /status answers, as far as these tests read it.
type status struct {
	Version  string `json:"version"`
	Upstream struct {
		Way struct {
			Via, Address string
		} `json:"way"`
		Up   bool `json:"up"`
		Down *struct {
			AADSTS      string `json:"aadsts"`
			Explanation string `json:"explanation"`
		} `json:"down"`
		HeldMailboxes []struct {
			Mailbox, Code, Explanation string
			Messages                   int
		} `json:"held_mailboxes"`
	} `json:"upstream"`
	Queue struct {
		Queued, Held, Failed int
	} `json:"queue"`
}

func getStatus(t *testing.T, base string) status {
	t.Helper()
	var st status
	code, body := httpGet(t, base+"/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	return st
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitStatus polls /status until cond holds.
func waitStatus(t *testing.T, base string, cond func(status) bool) status {
	t.Helper()
	var st status
	waitFor(t, deliveryTimeout, func() bool { st = getStatus(t, base); return cond(st) })
	return st
}

// outage is a gateway whose client secret file an admin can fix.
type outage struct {
	fake       *graphtest.Server
	g          *gateway
	secretFile string
	metrics    string // base URL of the metrics listener
}

// secretDaysLeft is how many whole days the client secret of
// startWithWrongSecret has left.
const secretDaysLeft = 9

// startWithWrongSecret starts a gateway whose secret file holds a secret
// Entra ID refuses (AADSTS7000215).
func startWithWrongSecret(t *testing.T) *outage {
	fake := graphtest.New(t)
	dir := t.TempDir()
	o := &outage{fake: fake, secretFile: fake.WriteSecretFile(dir)}
	if err := os.WriteFile(o.secretFile, []byte("not-the-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The secret also expires soon, as the admin noted in the configuration.
	expires := time.Now().UTC().AddDate(0, 0, secretDaysLeft+1).Format(time.DateOnly)
	target := fake.GraphTOMLWithSecretFile(o.secretFile) + "client_secret_expires = " + expires + "\n" + withMetrics
	o.g = startGateway(t, dir, gatewayConfig(t, dir, target), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	o.metrics = o.g.MetricsURL()
	return o
}

// fixSecret writes the right secret to the file, as the admin would.
func (o *outage) fixSecret(t *testing.T) {
	if err := os.WriteFile(o.secretFile, []byte(o.fake.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWrongSecretHoldsMailUntilFixed is the outage of a refused client
// secret: accepted mail waits without bounces while /status and `check` say
// why, and the gateway stays ready and keeps accepting; once the secret file
// is right (and SIGHUP sent), every message arrives exactly once with no
// retry command.
func TestWrongSecretHoldsMailUntilFixed(t *testing.T) {
	o := startWithWrongSecret(t)
	submitScan := func(n int) string {
		return mustSubmit(t, o.g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"},
			Body: fmt.Sprintf("Subject: scan %d\n\npage %d\n", n, n)})
	}
	first := submitScan(1)
	submitScan(2)
	submitScan(3)

	st := waitStatus(t, o.metrics, func(st status) bool { return !st.Upstream.Up && st.Queue.Held == 3 })
	if st.Upstream.Down == nil || st.Upstream.Down.AADSTS != "AADSTS7000215" || !strings.Contains(st.Upstream.Down.Explanation, "client_secret_file") {
		t.Errorf("/status upstream = %+v", st.Upstream)
	}
	if st.Upstream.Way.Via != "graph" || st.Upstream.Way.Address != o.fake.URL {
		t.Errorf("/status names the way out %+v, want graph at %s", st.Upstream.Way, o.fake.URL)
	}
	if st.Version == "" || st.Queue.Failed != 0 {
		t.Errorf("/status = %+v", st)
	}
	for _, probe := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, o.metrics+probe); code != http.StatusOK {
			t.Errorf("%s = %d during the outage, want 200: %s", probe, code, body)
		}
	}
	check := exec.Command(binary, "check", "-config", filepath.Join(o.g.dir, "smtpgw.toml"))
	check.Env = append(os.Environ(), "SSL_CERT_FILE="+o.fake.WriteCAFile(t.TempDir()))
	if out, err := check.CombinedOutput(); err == nil || !strings.Contains(string(out), "AADSTS7000215") {
		t.Errorf("check with the refused secret: %v, want a failure naming AADSTS7000215:\n%s", err, out)
	}
	_, metrics := httpGet(t, o.metrics+"/metrics")
	for _, want := range []string{"smtpgw_upstream_up 0", `smtpgw_queue_messages{state="held"} 3`, `smtpgw_token_failures_total{aadsts="AADSTS7000215"}`, "smtpgw_build_info{"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	submitScan(4) // still accepted
	waitLog(t, o.g, `level=ERROR msg="upstream down`, 1)
	if logs := o.g.logs.String(); strings.Count(logs, "upstream down") != 1 || !strings.Contains(logs, "error.aadsts=AADSTS7000215") {
		t.Errorf("want one ERROR line naming AADSTS7000215 for the outage:\n%s", logs)
	}
	if sent := o.fake.Sent(); len(sent) != 0 {
		t.Fatalf("%d messages sent with a refused secret (bounces?)", len(sent))
	}
	show, err := exec.Command(binary, "queue", "show", first, "-config", filepath.Join(o.g.dir, "smtpgw.toml")).CombinedOutput()
	if err != nil || !strings.Contains(string(show), "Attempts:     0") || !strings.Contains(string(show), "code AADSTS7000215, request-id ") {
		t.Errorf("queue show of a held message (%v):\n%s", err, show)
	}

	o.fixSecret(t)
	// The new secret comes with its own expiry date.
	configFile := filepath.Join(o.g.dir, "smtpgw.toml")
	config, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	renewed := time.Now().UTC().AddDate(0, 0, 101).Format(time.DateOnly)
	config = regexp.MustCompile(`(?m)^client_secret_expires = .*$`).ReplaceAll(config, []byte("client_secret_expires = "+renewed))
	if err := os.WriteFile(configFile, config, 0o600); err != nil {
		t.Fatal(err)
	}
	o.g.reload(t, 1) // what the admin does after fixing; delivery does not wait for it
	o.fake.WaitSent(t, 4, deliveryTimeout)
	_, metrics = httpGet(t, o.metrics+"/metrics")
	m := regexp.MustCompile(`(?m)^smtpgw_graph_client_secret_expiry_seconds (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Fatal("/metrics lacks smtpgw_graph_client_secret_expiry_seconds")
	}
	if left, err := strconv.ParseFloat(m[1], 64); err != nil || left < 100*86400 || left > 101*86400 {
		t.Errorf("after the reload, the secret expires in %s seconds, want 100 to 101 days", m[1])
	}
	st = waitStatus(t, o.metrics, func(st status) bool { return st.Upstream.Up && st.Queue.Queued+st.Queue.Held == 0 })
	if st.Queue.Failed != 0 {
		t.Errorf("%d dead letters", st.Queue.Failed)
	}
	subjects := map[string]int{}
	for _, s := range o.fake.Sent() {
		subjects[s.Message.Subject]++
	}
	for n := 1; n <= 4; n++ {
		if got := subjects[fmt.Sprintf("scan %d", n)]; got != 1 {
			t.Errorf("scan %d arrived %d times, want once", n, got)
		}
	}
	if len(subjects) != 4 {
		t.Errorf("sent subjects = %v, want the four scans only", subjects)
	}
	waitLog(t, o.g, `level=ERROR msg="upstream up`, 1)
}
