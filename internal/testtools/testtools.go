// Package testtools finds the programs that tests drive (Dovecot,
// promtool, Chromium, Postfix's tools, openssl), which scripts/test-deps
// installs.
package testtools

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// sbinDirs are searched after PATH: Debian puts daemons such as dovecot
// there, and a user's PATH often lacks them.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin"}

// Require returns the path of program, a name searched in PATH and then in
// /usr/sbin and /usr/local/sbin, or an absolute path. Without it the test
// is skipped on a developer's machine, and fails when the environment
// variable CI is "true": CI installs every program the tests drive
// (scripts/test-deps), so a missing one there is a broken setup, not a
// test to pass over. install says how to get it, e.g. "apt-get install
// prometheus".
func Require(t testing.TB, program, install string) string {
	t.Helper()
	if path, err := exec.LookPath(program); err == nil {
		return path
	}
	if !filepath.IsAbs(program) {
		for _, dir := range sbinDirs {
			path := filepath.Join(dir, program)
			if _, err := exec.LookPath(path); err == nil {
				return path
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI installs it (scripts/test-deps): %s", program, install)
	}
	t.Skipf("%s is not installed: %s", program, install)
	return ""
}
