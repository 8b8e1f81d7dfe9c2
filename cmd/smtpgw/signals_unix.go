//go:build !windows

package main

import (
	"os"
	"syscall"
)

// controlSignals are the signals serve turns into controls.
var controlSignals = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM}

// controlFor maps SIGHUP to a reload and every other control signal to a
// stop.
func controlFor(sig os.Signal) control {
	if sig == syscall.SIGHUP {
		return controlReload
	}
	return controlStop
}
