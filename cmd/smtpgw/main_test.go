package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestHashPassword(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"hash-password", "-cost", "4"}, strings.NewReader("printer pw\n"), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("printer pw")); err != nil {
		t.Errorf("hash %q does not match the password: %v", hash, err)
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost != 4 {
		t.Errorf("cost %d, want 4", cost)
	}
	if !strings.Contains(errOut.String(), "warning: cost 4") {
		t.Errorf("no warning for a low cost: %q", errOut.String())
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: smtpgw"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"hash-password", "secret"}, 2, "never as an argument"},
		{[]string{"queue", "show"}, 2, "queue show takes 1 argument"},
		{[]string{"queue", "list", "-state", "lost"}, 2, "-state must be one of"},
		{[]string{"queue", "purge-failed"}, 2, "needs -older-than"},
		{[]string{"check", "/etc/smtpgw/smtpgw.toml"}, 2, "check -config /etc/smtpgw/smtpgw.toml"},
		{[]string{"serve", "/etc/smtpgw/smtpgw.toml"}, 2, "serve -config /etc/smtpgw/smtpgw.toml"},
		{[]string{"check", "-colour"}, 2, "flag provided but not defined"},
		{[]string{"version", "now"}, 2, "version takes no arguments"},
		{[]string{"check", "-config", "/nonexistent/smtpgw.toml"}, 1, "read configuration"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(tt.args, strings.NewReader(""), &out, &errOut)
		if code != tt.code || !strings.Contains(errOut.String()+out.String(), tt.want) {
			t.Errorf("smtpgw %v: exit %d, output %q; want exit %d with %q", tt.args, code, errOut.String()+out.String(), tt.code, tt.want)
		}
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args    []string
		command string
	}{
		{[]string{"help", "serve"}, "serve"},
		{[]string{"serve", "-h"}, "serve"},
		{[]string{"help", "check"}, "check"},
		{[]string{"check", "-help"}, "check"},
		{[]string{"help", "hash-password"}, "hash-password"},
		{[]string{"hash-password", "-h"}, "hash-password"},
		{[]string{"help", "queue"}, "queue"},
		{[]string{"queue", "help"}, "queue"},
		{[]string{"help", "version"}, "version"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(tt.args, strings.NewReader(""), &out, &errOut)
		if code != 0 || !strings.Contains(out.String(), "example: smtpgw "+tt.command) {
			t.Errorf("smtpgw %v: exit %d, stdout %q, stderr %q", tt.args, code, out.String(), errOut.String())
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		var out bytes.Buffer
		if code := run([]string{arg}, nil, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "smtpgw ") {
			t.Errorf("%s: exit %d, %q", arg, code, out.String())
		}
	}
}

// writeConfig writes a configuration with one listener, one network, the
// target section (an [outbox] when empty) and extra sections to a file,
// and returns its path.
func writeConfig(t *testing.T, target, extra string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "smtpgw.toml")
	if target == "" {
		target = fmt.Sprintf("[outbox]\ndir = %q\n", filepath.Join(dir, "outbox"))
	}
	content := fmt.Sprintf("[[listener]]\naddress = \"127.0.0.1:0\"\n\n%s\n[queue]\ndir = %q\n\n[[network]]\ncidrs = [\"127.0.0.1\"]\nmailbox = \"noreply@example.com\"\n\n%s",
		target, filepath.Join(dir, "spool"), extra)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFromEnvironment(t *testing.T) {
	path := writeConfig(t, "", "")
	t.Setenv(configEnv, path)
	var out, errOut bytes.Buffer
	if code := run([]string{"check"}, nil, &out, &errOut); code != 0 || !strings.Contains(out.String(), "configuration file: "+path) {
		t.Errorf("check with %s set: exit %d, %q %q", configEnv, code, out.String(), errOut.String())
	}
	t.Setenv(configEnv, "")
	out.Reset()
	if code := run([]string{"check"}, nil, &out, &errOut); code != 0 || !strings.Contains(out.String(), "checking the built-in example") {
		t.Errorf("check without a file: exit %d, %q", code, out.String())
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeECDSACertificate(t, dir, 10*24*time.Hour)
	otherCert, _ := writeECDSACertificate(t, t.TempDir(), 365*24*time.Hour)
	os.Chmod(keyFile, 0o644)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("\n"), 0o600)
	graphWith := func(secret string) string {
		return fmt.Sprintf("[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\nclient_secret_file = %q\n", secret)
	}
	graph := graphWith(secret)
	validSecret := filepath.Join(dir, "valid-secret")
	os.WriteFile(validSecret, []byte("s3cret\n"), 0o600)
	validGraph := graphWith(validSecret)
	// secretExpiresIn is the day, UTC, days from today: the secret
	// expires at its start.
	secretExpiresIn := func(days int) string { return time.Now().UTC().AddDate(0, 0, days).Format(time.DateOnly) }
	tests := []struct {
		name, target, extra string
		want                []string
		errors              int
	}{
		{"ECDSA for TLS 1.0, expiring, readable key", "", fmt.Sprintf("[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"implicit\"\nmin_tls_version = \"1.0\"\n\n[tls]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile),
			[]string{"warning: tls.cert_file is an ECDSA certificate", "warning: the TLS certificate " + certFile + " expires in 9 day(s)", "warning: tls.key_file: " + keyFile + " is readable by group or others"}, 0},
		{"key of another certificate", "", fmt.Sprintf("[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\n\n[tls]\ncert_file = %q\nkey_file = %q\n", otherCert, keyFile),
			[]string{"error: tls.cert_file and tls.key_file: tls: private key does not match public key"}, 1},
		{"unresolvable address", "", "[[listener]]\naddress = \"127.0.0.1:notaport\"\n", []string{"error: listener[1].address"}, 1},
		{"empty secret", graph, "", []string{"error: graph.client_secret_file: " + secret + " is empty"}, 1},
		{"secret expiring", validGraph + "client_secret_expires = " + secretExpiresIn(10) + "\n", "", []string{"warning: the client secret (graph.client_secret_expires) expires in 9 day(s), on " + secretExpiresIn(10)}, 0},
		{"secret valid", validGraph + "client_secret_expires = " + secretExpiresIn(20) + "\n", "", []string{"the client secret (graph.client_secret_expires) expires in 19 days"}, 0},
		{"secret expired", validGraph + "client_secret_expires = " + secretExpiresIn(0) + "\n", "", []string{"error: the client secret (graph.client_secret_expires) expired on " + secretExpiresIn(0)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(writeConfig(t, tt.target, tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			f := &findings{out: &out}
			checkListeners(cfg, f)
			checkSecretFiles(cfg, f)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if f.errors != tt.errors {
				t.Errorf("%d error(s), want %d:\n%s", f.errors, tt.errors, out.String())
			}
		})
	}
}

// writeECDSACertificate writes a self-signed ECDSA certificate valid for
// lifetime and its key as PEM files in dir.
func writeECDSACertificate(t *testing.T, dir string, lifetime time.Duration) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "smtpgw.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(lifetime),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}
