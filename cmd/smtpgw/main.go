// Command smtpgw accepts SMTP from printers, scanners and legacy
// applications and sends each message through Microsoft Graph as the mailbox
// mapped to the device.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

const usage = `usage: smtpgw <command> [flags]

commands:
  serve          run the gateway (-config FILE; default: the built-in example)
  check          validate the configuration and, with [graph], try Entra ID
  hash-password  read one password line from stdin, print its bcrypt hash
  queue          inspect and manage the spool (smtpgw queue help)
  service        install and control the Windows service (Windows only)
  version        print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// errUsage marks errors caused by how the command was called; they print
// the usage and exit 2.
var errUsage = errors.New("usage error")

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(rest, stderr)
	case "check":
		err = check(rest, stdout)
	case "hash-password":
		err = hashPassword(rest, stdin, stdout)
	case "queue":
		err = queueCommand(rest, stdout)
	case "service":
		err = serviceCommand(rest, stdout)
	case "version":
		fmt.Fprintln(stdout, "smtpgw", buildVersion())
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "smtpgw: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "smtpgw: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "smtpgw: %v\n", err)
		return 1
	}
}

// buildVersion is the version stamped by the Makefile, else the module
// version Go recorded, else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
