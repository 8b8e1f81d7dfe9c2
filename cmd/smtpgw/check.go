package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// checkTimeout bounds the whole Entra ID round trip of `check`.
const checkTimeout = 30 * time.Second

// How close to expiry a certificate or the client secret gets a warning:
// a certificate as early as the admin's CA may need, the secret when the
// alert on it fires.
const (
	certificateExpiryWarning = 30 * 24 * time.Hour
	secretExpiryWarning      = 14 * 24 * time.Hour
)

// findings is what check prints as it goes; errors decide its exit code.
type findings struct {
	out    io.Writer
	errors int
}

func (f *findings) info(format string, args ...any) { fmt.Fprintf(f.out, format+"\n", args...) }

func (f *findings) warn(format string, args ...any) {
	fmt.Fprintf(f.out, "warning: "+format+"\n", args...)
}

func (f *findings) fail(format string, args ...any) {
	f.errors++
	fmt.Fprintf(f.out, "error: "+format+"\n", args...)
}

// check validates the configuration as serve would, looks at the files it
// names, and with [graph] acquires a token and optionally sends test
// messages. It fails when sending cannot work.
func check(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: $"+configEnv+", else the built-in example)")
	sendTo := fs.String("send-test", "", "send one test message to this address through each mapped mailbox")
	only := fs.String("mailbox", "", "with -send-test: only through this mailbox")
	readTest := fs.String("read-test", "", "log in to Exchange Online as this mailbox over IMAP and POP3")
	if err := noArguments(fs, args, stdout); err != nil {
		return err
	}
	if *only != "" && *sendTo == "" {
		return fmt.Errorf("%w: -mailbox goes with -send-test", errUsage)
	}
	f := &findings{out: stdout}
	if source := configSource(*path); source == builtInExample {
		f.warn("no -config and no %s: checking the built-in example, not your configuration", configEnv)
	} else {
		f.info("configuration file: %s", source)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		f.warn("%s", w)
	}
	f.info("configuration OK: %d listener(s), %d user(s), %d network(s), target %s",
		len(cfg.Listeners), len(cfg.Users), len(cfg.Networks), targetName(cfg))
	checkListeners(cfg, f)
	checkSecretFiles(cfg, f)
	if cfg.Graph != nil {
		checkGraph(cfg.Graph, f)
		if *sendTo != "" && f.errors == 0 {
			sendTests(cfg, *sendTo, *only, f)
		}
		if readsMail(cfg) || *readTest != "" {
			checkExchange(cfg, *readTest, f)
		}
	} else if *sendTo != "" || *readTest != "" {
		f.fail("-send-test and -read-test need [graph]: with [outbox] nothing is sent or read")
	}
	if f.errors > 0 {
		return fmt.Errorf("%d error(s) found", f.errors)
	}
	return nil
}

func checkGraph(g *config.Graph, f *findings) {
	if g.CertificateFile != "" {
		notAfter, err := upstream.CertificateExpiry(g)
		if err != nil {
			f.fail("graph.certificate_file: %v", err)
			return
		}
		reportExpiry(f, "the Graph client certificate "+g.CertificateFile, notAfter, certificateExpiryWarning)
	}
	graph, err := upstream.NewGraph(g, upstream.Options{})
	if err != nil {
		f.fail("graph: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	info, err := graph.Check(ctx)
	if err != nil {
		reportTokenFailure(f, g, err)
		return
	}
	f.info("token OK: tenant %s, app %s", info.TenantID, info.AppID)
	f.info("application roles: %s", strings.Join(info.Roles, ", "))
	// With RBAC for Applications, Exchange grants the permissions and the
	// token carries no roles, so missing roles are warnings, not failures.
	if !slices.Contains(info.Roles, "Mail.Send") {
		f.warn("the token carries no Mail.Send application permission: grant it on Microsoft Graph and give admin consent (not needed with RBAC for Applications)")
	}
	if !slices.Contains(info.Roles, "Mail.ReadWrite") {
		f.warn("Mail.ReadWrite is not granted: messages over about 3 MB (sent as draft plus upload) will fail")
	}
}

// reportTokenFailure tells a network failure from Entra ID refusing the
// credential, since the admin fixes them in different places.
func reportTokenFailure(f *findings, g *config.Graph, err error) {
	var uerr *upstream.Error
	if !errors.As(err, &uerr) {
		f.fail("token request failed: %v", err)
		return
	}
	if uerr.Status == 0 {
		f.fail("cannot reach %s: %v", upstream.LoginHost(g), causeOf(uerr))
		return
	}
	f.fail("Entra ID refused the token request (HTTP %d %s): %s", uerr.Status, uerr.Code, causeOf(uerr))
}

// causeOf is the most telling text of an upstream error: Entra ID's own
// answer (with its AADSTS code and description) when there is one.
func causeOf(e *upstream.Error) string {
	if e.Err != nil {
		return oneLine(e.Err.Error())
	}
	return e.Message
}

// reportExpiry prints how long a certificate or secret has left, warns
// when that is under warnWithin, and fails once it has expired.
func reportExpiry(f *findings, what string, notAfter time.Time, warnWithin time.Duration) {
	left := time.Until(notAfter)
	days := int(left.Hours() / 24)
	switch {
	case left <= 0:
		f.fail("%s expired on %s", what, notAfter.Format(time.DateOnly))
	case left < warnWithin:
		f.warn("%s expires in %d day(s), on %s: renew it", what, days, notAfter.Format(time.DateOnly))
	default:
		f.info("%s expires in %d days, on %s", what, days, notAfter.Format(time.DateOnly))
	}
}
