package main

import (
	"bytes"
	"strings"
	"testing"

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
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: smtpgw"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"hash-password", "secret"}, 2, "takes the password on stdin"},
		{[]string{"queue", "show"}, 2, "queue show takes 1 argument"},
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

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, nil, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "smtpgw ") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
}
