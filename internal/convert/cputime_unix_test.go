//go:build unix

package convert

import (
	"syscall"
	"time"
)

// processCPUTime is the CPU time the test process has used: on a machine
// shared with other work it measures cost where elapsed time does not.
func processCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
