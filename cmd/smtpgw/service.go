package main

import (
	"bytes"
	"log/slog"
	"time"
)

// The Windows service, in the part that is the same on every platform: what
// a Service Control Manager request asks of the running gateway, what the
// SCM is told as the gateway's state changes, and which event log level a
// log line gets. service_windows.go connects it to the SCM; the tests drive
// it on any platform.

// serviceName is the service's name in the SCM and the event log source.
const serviceName = "smtpgw"

// scmRequest is a control request the SCM sends a running service.
type scmRequest int

const (
	scmStop scmRequest = iota + 1
	scmShutdown
	scmParamChange
)

// scmControl says what an SCM request asks of the gateway. Stop and
// Shutdown stop it gracefully, ParamChange (`sc control smtpgw
// paramchange`) reloads the configuration; nothing else asks anything of it.
func scmControl(req scmRequest) (control, bool) {
	switch req {
	case scmStop, scmShutdown:
		return controlStop, true
	case scmParamChange:
		return controlReload, true
	}
	return 0, false
}

// scmState is a service state as the SCM shows it.
type scmState int

const (
	scmStartPending scmState = iota + 1
	scmRunning
	scmStopPending
)

// scmStatus is what the service reports to the SCM.
type scmStatus struct {
	State    scmState
	Accepts  bool          // Stop, Shutdown and ParamChange are accepted
	WaitHint time.Duration // how long a pending state may last before the SCM thinks the service hung
}

// startWaitHint covers loading the configuration and opening the spool.
const startWaitHint = 30 * time.Second

// scmLifecycle is the gateway's lifecycle as the SCM hears it. The SCM has
// no reloading state: the service stays running through a reload.
type scmLifecycle struct {
	report   func(scmStatus)
	stopHint time.Duration // shutdown_timeout and a margin
}

// newSCMLifecycle reports the start as pending at once; stopHint is how
// long a graceful stop may take.
func newSCMLifecycle(report func(scmStatus), stopHint time.Duration) *scmLifecycle {
	l := &scmLifecycle{report: report, stopHint: stopHint}
	l.report(scmStatus{State: scmStartPending, WaitHint: startWaitHint})
	return l
}

func (l *scmLifecycle) Ready()     { l.report(scmStatus{State: scmRunning, Accepts: true}) }
func (l *scmLifecycle) Reloading() {}
func (l *scmLifecycle) Reloaded()  {}
func (l *scmLifecycle) Stopping()  { l.report(scmStatus{State: scmStopPending, WaitHint: l.stopHint}) }

// logLineLevel reads the level of one line the gateway's text or JSON log
// handler wrote, so the event log files it as error, warning or
// information. Both handlers write the level before the message, so the
// first level key is the record's own, whatever the message says.
func logLineLevel(line []byte) slog.Level {
	at, value := -1, 0 // where the first level key starts, where its value does
	for _, key := range []string{"level=", `"level":"`} {
		if i := bytes.Index(line, []byte(key)); i >= 0 && (at < 0 || i < at) {
			at, value = i, i+len(key)
		}
	}
	if at < 0 {
		return slog.LevelInfo
	}
	switch rest := line[value:]; {
	case bytes.HasPrefix(rest, []byte("ERROR")):
		return slog.LevelError
	case bytes.HasPrefix(rest, []byte("WARN")):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
