package main

import (
	"context"
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

// check validates the configuration and, with [graph], acquires a token to
// show what the app registration grants. It fails when sending cannot work.
func check(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: the built-in example)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	fmt.Fprintf(stdout, "configuration OK: %d listener(s), %d user(s), %d network(s), target %s\n",
		len(cfg.Listeners), len(cfg.Users), len(cfg.Networks), targetName(cfg))
	if cfg.Graph == nil {
		return nil
	}
	return checkGraph(cfg.Graph, stdout)
}

func checkGraph(g *config.Graph, stdout io.Writer) error {
	graph, err := upstream.NewGraph(g, upstream.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	info, err := graph.Check(ctx)
	if err != nil {
		return fmt.Errorf("token request failed: %w", err)
	}
	fmt.Fprintf(stdout, "token OK: tenant %s, app %s\n", info.TenantID, info.AppID)
	fmt.Fprintf(stdout, "application roles: %s\n", strings.Join(info.Roles, ", "))
	// With RBAC for Applications, Exchange grants the permissions and the
	// token carries no roles, so missing roles are warnings, not failures.
	if !slices.Contains(info.Roles, "Mail.Send") {
		fmt.Fprintln(stdout, "warning: the token carries no Mail.Send application permission: grant it on Microsoft Graph and give admin consent (not needed with RBAC for Applications)")
	}
	if !slices.Contains(info.Roles, "Mail.ReadWrite") {
		fmt.Fprintln(stdout, "warning: Mail.ReadWrite is not granted: messages over about 3 MB (sent as draft plus upload) will fail")
	}
	return nil
}
