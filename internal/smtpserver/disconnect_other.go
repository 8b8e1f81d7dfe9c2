//go:build !windows

package smtpserver

import "syscall"

// socketGone are the socket errors of a client that went away: a reset, or
// a write to a connection it already closed.
var socketGone = []error{syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE}
