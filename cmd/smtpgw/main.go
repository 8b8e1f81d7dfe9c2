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
	"strings"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

const usage = `usage: smtpgw <command> [flags]

commands:
  serve            run the gateway
  check            validate the configuration and try Entra ID and Graph
  hash-password    print the bcrypt hash of a password, for [[user]]
  queue            inspect and manage the spool (smtpgw queue help)
  service          install and control the Windows service (Windows only)
  tls-certificate  print the certificate the TLS listeners serve, for clients to trust
  trace            search the message trace: where did a message go?
  version          print the version

The configuration is -config FILE, else the file named by SMTPGW_CONFIG,
else the built-in example. "smtpgw help COMMAND" describes a command.
`

// helps is the one-paragraph description of each command, with an example,
// for "smtpgw help CMD" and "smtpgw CMD -h".
var helps = map[string]string{
	"serve": `smtpgw serve runs the gateway: it accepts SMTP on the configured listeners,
spools each message and sends it through Microsoft Graph. SIGHUP reloads the
configuration (users, networks, TLS certificate, Graph credential) without
dropping connections; SIGINT or SIGTERM stop it gracefully. Only one gateway
may use a spool.

example: smtpgw serve -config /etc/smtpgw/smtpgw.toml
`,
	"check": `smtpgw check validates the configuration as serve would (certificates,
addresses, secret files), acquires a token from Entra ID and reports the
permissions it carries and how many days the certificates have left. With
-send-test it sends one real message through each mapped mailbox. It exits 1
when sending cannot work.

example: smtpgw check -config /etc/smtpgw/smtpgw.toml -send-test admin@contoso.com
`,
	"hash-password": `smtpgw hash-password prints the bcrypt hash of a password for a [[user]]
password_hash. On a terminal it asks for the password without echo; otherwise
it reads one line from standard input.

example: smtpgw hash-password -cost 12
`,
	"queue": queueUsage,
	"trace": traceHelp,
	"tls-certificate": `smtpgw tls-certificate prints, in PEM, the certificate the TLS listeners
serve, never its key: the chain of [tls] cert_file, or the self-signed
certificates the gateway keeps in its spool folder (made and kept there
first when there are none yet, as serve would). Clients that verify
certificates can trust the printed file. Run it as the user the gateway
runs as, so that the certificate it keeps stays readable to the gateway.

example: smtpgw tls-certificate -config /etc/smtpgw/smtpgw.toml > smtpgw.pem
`,
	"version": `smtpgw version prints the version of this build (also: smtpgw --version).

example: smtpgw version
`,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// errUsage marks errors caused by how the command was called; they print
// the usage and exit 2.
var errUsage = errors.New("usage error")

// errLogged is a failure already reported through the log.
type errLogged struct{ err error }

func (e errLogged) Error() string { return e.err.Error() }
func (e errLogged) Unwrap() error { return e.err }

// Exit codes, as docs/operations.md lists them.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(rest, stdout, stderr)
	case "check":
		err = check(rest, stdout)
	case "hash-password":
		err = hashPassword(rest, stdin, stdout, stderr)
	case "queue":
		err = queueCommand(rest, stdout)
	case "service":
		err = serviceCommand(rest, stdout)
	case "trace":
		err = traceCommand(rest, stdout)
	case "tls-certificate":
		err = tlsCertificate(rest, stdout)
	case "version", "-version", "--version":
		err = noArguments(flag.NewFlagSet("version", flag.ContinueOnError), rest, stdout)
		if err == nil {
			fmt.Fprintln(stdout, "smtpgw", buildVersion())
		}
	case "help", "-h", "-help", "--help":
		err = help(rest, stdout)
	default:
		fmt.Fprintf(stderr, "smtpgw: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	var logged errLogged
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "smtpgw: %v\n", err)
		return exitUsage
	case errors.As(err, &logged):
		return exitError
	default:
		fmt.Fprintf(stderr, "smtpgw: %v\n", err)
		return exitError
	}
}

// help prints the usage, or the description of one command.
func help(args []string, stdout io.Writer) error {
	switch len(args) {
	case 0:
		fmt.Fprint(stdout, usage)
		return nil
	case 1:
		text, ok := helps[args[0]]
		if !ok {
			return fmt.Errorf("%w: no command %q\n\n%s", errUsage, args[0], usage)
		}
		fmt.Fprint(stdout, text)
		return nil
	}
	return fmt.Errorf("%w: help takes one command name", errUsage)
}

// parseFlags parses a command's flags. -h prints the command's description
// and flags to stdout (and the command exits 0); a bad flag is a usage
// error.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		name, _, _ := strings.Cut(fs.Name(), " ")
		fmt.Fprint(stdout, helps[name])
		fmt.Fprintln(stdout, "\nflags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	return nil
}

// noArguments parses flags for a command that takes no positional
// arguments, and refuses any: `smtpgw check FILE` would otherwise check
// something else than FILE.
func noArguments(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		hint := ""
		if fs.Lookup("config") != nil {
			hint = fmt.Sprintf(" (for a configuration file: %s -config %s)", fs.Name(), fs.Arg(0))
		}
		return fmt.Errorf("%w: %s takes no arguments, got %q%s", errUsage, fs.Name(), fs.Args(), hint)
	}
	return nil
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
