package main

import (
	"errors"
	"reflect"

	"github.com/smtpgw/smtpgw/internal/config"
)

// graphReloader is a target that can take a changed [graph] section
// without a restart (the Graph target: a new secret, certificate or app;
// it reads the credential files again).
type graphReloader interface {
	Apply(*config.Graph) error
}

// reload reads the configuration again and applies what can change while
// the gateway runs: users, networks and their mailboxes, max_connections,
// max_auth_failures, [limits] but idle_timeout, debug_clients, the TLS
// certificate, the log level and the Graph credential. A file that
// does not load changes nothing, and every problem in it is logged.
// Settings that only a restart applies are logged as such.
func (g *gateway) reload() {
	g.log.Info("reloading configuration", "file", g.source)
	cfg, err := loadConfig(g.path)
	if err != nil {
		g.logRefusedReload(err)
		return
	}
	for _, w := range cfg.Warnings {
		g.log.Warn("configuration", "warning", w)
	}
	// The gate first: its identities are the part most likely refused.
	if err := g.gate.Reload(cfg); err != nil {
		g.log.Error("reload refused; the running configuration stays", "error", err)
		return
	}
	if err := g.certs.Reload(cfg); err != nil {
		g.log.Error("reload of the TLS certificate refused; the running certificate stays", "error", err)
		return
	}
	if cfg.Graph != nil && g.cfg.Graph != nil {
		g.applyGraph(cfg.Graph, !reflect.DeepEqual(cfg.Graph, g.cfg.Graph))
	}
	for _, setting := range restartNeeded(g.cfg, cfg) {
		g.log.Warn("changed setting needs a restart to apply", "setting", setting)
	}
	g.level.Set(logLevel(cfg.Log.Level))
	g.cfg = cfg
	g.log.Info("configuration reloaded", "users", len(cfg.Users), "networks", len(cfg.Networks))
}

// logRefusedReload logs every problem of a configuration that did not load.
func (g *gateway) logRefusedReload(err error) {
	const msg = "reload refused: the configuration file has errors; the running configuration stays"
	var problems config.Errors
	if !errors.As(err, &problems) {
		g.log.Error(msg, "error", err)
		return
	}
	for _, p := range problems {
		g.log.Error(msg, "problem", p.String())
	}
}

// applyGraph hands the [graph] section to the Graph target, which reads
// the secret or certificate files again: a reload applies a renewed secret
// even when the section itself did not change.
func (g *gateway) applyGraph(graph *config.Graph, changed bool) {
	r, ok := g.target.(graphReloader)
	if !ok {
		if changed {
			g.log.Warn("changed setting needs a restart to apply", "setting", "graph")
		}
		return
	}
	if err := r.Apply(graph); err != nil {
		g.log.Error("the [graph] settings could not be applied; the running credential stays", "error", err)
		return
	}
	g.log.Info("graph credential reloaded")
}

// restartNeeded names the settings that differ between old and next and
// that only a restart applies.
func restartNeeded(old, next *config.Config) []string {
	var names []string
	differs := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			names = append(names, name)
		}
	}
	differs("listener", old.Listeners, next.Listeners)
	differs("server", withoutGateKeys(old.Server), withoutGateKeys(next.Server))
	// The gate applies the rest of [limits]; go-smtp keeps its idle timeout.
	differs("limits.idle_timeout", old.Limits.IdleTimeout, next.Limits.IdleTimeout)
	differs("queue", old.Queue, next.Queue)
	differs("exchange", old.Exchange, next.Exchange)
	differs("outbox", old.Outbox, next.Outbox)
	differs("metrics.address", old.Metrics.Address, next.Metrics.Address)
	differs("log.format", old.Log.Format, next.Log.Format)
	if (old.Graph == nil) != (next.Graph == nil) {
		names = append(names, "graph")
	}
	return names
}

// withoutGateKeys leaves out the [server] keys that the clients gate
// applies on reload.
func withoutGateKeys(s config.Server) config.Server {
	s.MaxConnections, s.MaxAuthFailures = 0, 0
	return s
}
