// Package monitoring holds the Prometheus alert rules and the Grafana
// dashboard shipped for smtpgw; its tests run them through promtool.
package monitoring

import (
	"os/exec"
	"testing"

	"github.com/smtpgw/smtpgw/internal/testtools"
)

// promtool runs Debian's promtool (package prometheus). Without it the
// test is skipped on a developer's machine and fails under CI.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	path := testtools.Require(t, "promtool", "apt-get install prometheus")
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
}

func TestAlertRulesAreValid(t *testing.T) {
	promtool(t, "check", "rules", "smtpgw-alerts.yml")
}

// TestAlertRulesFireWhenTheyShould runs rules_test.yml: a series that
// must raise each alert and one that must not.
func TestAlertRulesFireWhenTheyShould(t *testing.T) {
	promtool(t, "test", "rules", "rules_test.yml")
}
