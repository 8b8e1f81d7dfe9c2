package main

import (
	"os"
	"syscall"
)

// controlSignals are the console events serve turns into controls: Ctrl-C,
// and closing the console or logging off. A service gets its reload
// from the service manager instead.
var controlSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

func controlFor(os.Signal) control { return controlStop }
