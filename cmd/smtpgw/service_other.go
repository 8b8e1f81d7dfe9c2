//go:build !windows

package main

import (
	"fmt"
	"io"
)

// serviceCommand exists on Windows only; elsewhere the platform's own
// supervisor runs `smtpgw serve` (systemd: packaging/systemd/smtpgw.service).
func serviceCommand([]string, io.Writer) error {
	return fmt.Errorf("%w: smtpgw service is for Windows only; on Linux install the .deb or run `smtpgw serve` under systemd", errUsage)
}
