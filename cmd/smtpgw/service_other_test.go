//go:build !windows

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestServiceIsWindowsOnly(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"service", "install"}, nil, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "Windows only") {
		t.Errorf("exit %d, stderr %q; want 2 and a Windows-only message", code, errOut.String())
	}
}
