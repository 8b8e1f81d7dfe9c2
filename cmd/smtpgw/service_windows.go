//go:build windows

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/smtpgw/smtpgw"
)

const serviceUsage = `usage: smtpgw service <command> [-config FILE]

commands:
  install    register the service (automatic start) and its event log source;
             writes the example configuration if FILE does not exist yet
  uninstall  remove the service and its event log source
  start      start the service
  stop       stop the service, waiting for the graceful shutdown
  run        run as the service (the Service Control Manager calls this)

FILE defaults to %s. Relative paths in it (spool, outbox)
are relative to its directory; the service logs to smtpgw.log there and to
the Application event log.
`

// eventID is the one event ID the gateway's log lines carry in the event log.
const eventID = 1

// serviceStopTimeout bounds how long `service stop` waits for Stopped.
const serviceStopTimeout = 5 * time.Minute

// dataDir is where the service keeps its configuration, spool and log:
// C:\ProgramData\smtpgw unless Windows puts ProgramData elsewhere.
func dataDir() string {
	if d := os.Getenv("ProgramData"); d != "" {
		return filepath.Join(d, serviceName)
	}
	return `C:\ProgramData\smtpgw`
}

func serviceCommand(args []string, stdout io.Writer) error {
	defaultConfig := filepath.Join(dataDir(), "smtpgw.toml")
	if len(args) == 0 {
		return fmt.Errorf("%w: smtpgw service needs a command\n\n"+serviceUsage, errUsage, defaultConfig)
	}
	fs := flag.NewFlagSet("service "+args[0], flag.ContinueOnError)
	path := fs.String("config", defaultConfig, "configuration file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	configPath, err := filepath.Abs(*path)
	if err != nil {
		return err
	}
	switch args[0] {
	case "install":
		err = installService(configPath)
	case "uninstall":
		err = uninstallService()
	case "start":
		err = startService()
	case "stop":
		err = stopService()
	case "run":
		return runService(configPath)
	default:
		return fmt.Errorf("%w: unknown service command %q\n\n"+serviceUsage, errUsage, args[0], defaultConfig)
	}
	if err == nil {
		fmt.Fprintf(stdout, "service %s: %s done\n", serviceName, args[0])
	}
	return err
}

func installService(configPath string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(configPath), 0o750); err != nil {
		return err
	}
	if _, err := os.Stat(configPath); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(configPath, smtpgw.ExampleConfig, 0o640); err != nil {
			return err
		}
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service manager: %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		return fmt.Errorf("service %s is already installed", serviceName)
	}
	s, err := m.CreateService(serviceName, exe, mgr.Config{
		DisplayName:      "smtpgw SMTP to Microsoft Graph gateway",
		Description:      "Accepts SMTP from printers, scanners and applications and sends it through Microsoft Graph.",
		StartType:        mgr.StartAutomatic,
		DelayedAutoStart: true, // after the network is up
	}, "service", "run", "-config", configPath)
	if err != nil {
		return err
	}
	defer s.Close()
	// Restart after a crash, as systemd's Restart=on-failure does.
	restart := mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: 5 * time.Second}
	if err := s.SetRecoveryActions([]mgr.RecoveryAction{restart, restart, restart}, 24*60*60); err != nil {
		s.Delete()
		return err
	}
	if err := eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		s.Delete()
		return fmt.Errorf("event log source: %w", err)
	}
	return nil
}

func uninstallService() error {
	return withService(func(s *mgr.Service) error {
		if err := s.Delete(); err != nil {
			return err
		}
		return eventlog.Remove(serviceName)
	})
}

func startService() error {
	return withService(func(s *mgr.Service) error { return s.Start() })
}

func stopService() error {
	return withService(func(s *mgr.Service) error {
		status, err := s.Control(svc.Stop)
		if err != nil {
			return err
		}
		for deadline := time.Now().Add(serviceStopTimeout); status.State != svc.Stopped; {
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s did not stop within %s", serviceName, serviceStopTimeout)
			}
			time.Sleep(500 * time.Millisecond)
			if status, err = s.Query(); err != nil {
				return err
			}
		}
		return nil
	})
}

// withService runs f on the installed service.
func withService(f func(*mgr.Service) error) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(serviceName)
	if err != nil {
		return fmt.Errorf("service %s is not installed", serviceName)
	}
	defer s.Close()
	return f(s)
}

// runService runs the gateway under the SCM, logging to smtpgw.log beside
// the configuration and to the event log.
func runService(configPath string) error {
	// The example configuration's ./spool and ./outbox land beside it.
	if err := os.Chdir(filepath.Dir(configPath)); err != nil {
		return err
	}
	elog, err := eventlog.Open(serviceName)
	if err != nil {
		return err
	}
	defer elog.Close()
	logFile, err := os.OpenFile(filepath.Join(filepath.Dir(configPath), "smtpgw.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		elog.Error(eventID, "open log file: "+err.Error())
		return err
	}
	defer logFile.Close()
	h := &serviceHandler{configPath: configPath, elog: elog, logs: io.MultiWriter(logFile, eventLogWriter{elog})}
	return svc.Run(serviceName, h)
}

type serviceHandler struct {
	configPath string
	elog       *eventlog.Log
	logs       io.Writer
}

// Execute runs the gateway until the SCM stops it or it fails.
func (h *serviceHandler) Execute(_ []string, requests <-chan svc.ChangeRequest, changes chan<- svc.Status) (bool, uint32) {
	// The SCM's wait hint for stopping is the gateway's own shutdown_timeout.
	stopHint := startWaitHint
	if cfg, err := loadConfig(h.configPath); err == nil {
		stopHint = cfg.Server.ShutdownTimeout.D() + 10*time.Second
	}
	var checkPoint sync.Mutex
	var point uint32
	life := newSCMLifecycle(func(s scmStatus) {
		checkPoint.Lock()
		point++
		changes <- svcStatus(s, point)
		checkPoint.Unlock()
	}, stopHint)

	controls := make(chan control)
	done := make(chan error, 1)
	go func() { done <- runGateway(h.configPath, controls, life, h.logs) }()
	for {
		select {
		case err := <-done:
			return h.exit(err)
		case req := <-requests:
			if req.Cmd == svc.Interrogate {
				changes <- req.CurrentStatus
				continue
			}
			c, ok := scmControl(scmRequestFor(req.Cmd))
			if !ok {
				continue
			}
			select {
			case controls <- c:
			case err := <-done:
				return h.exit(err)
			}
		}
	}
}

// exit reports how the gateway ended: an error is a service-specific exit
// code, with its text in the event log.
func (h *serviceHandler) exit(err error) (bool, uint32) {
	if err != nil {
		h.elog.Error(eventID, "smtpgw stopped: "+err.Error())
		return true, 1
	}
	return false, 0
}

func scmRequestFor(cmd svc.Cmd) scmRequest {
	switch cmd {
	case svc.Stop:
		return scmStop
	case svc.Shutdown:
		return scmShutdown
	case svc.ParamChange:
		return scmParamChange
	}
	return 0 // asks nothing of the gateway
}

func svcStatus(s scmStatus, checkPoint uint32) svc.Status {
	status := svc.Status{WaitHint: uint32(s.WaitHint / time.Millisecond)}
	switch s.State {
	case scmStartPending:
		status.State = svc.StartPending
	case scmRunning:
		status.State = svc.Running
	case scmStopPending:
		status.State = svc.StopPending
	}
	if s.Accepts {
		status.Accepts = svc.AcceptStop | svc.AcceptShutdown | svc.AcceptParamChange
	}
	if s.WaitHint > 0 {
		status.CheckPoint = checkPoint
	}
	return status
}

// eventLogWriter files each log line the gateway writes in the event log at
// its level.
type eventLogWriter struct{ log *eventlog.Log }

func (w eventLogWriter) Write(p []byte) (int, error) {
	line := string(p)
	switch logLineLevel(p) {
	case slog.LevelError:
		w.log.Error(eventID, line)
	case slog.LevelWarn:
		w.log.Warning(eventID, line)
	default:
		w.log.Info(eventID, line)
	}
	return len(p), nil
}
