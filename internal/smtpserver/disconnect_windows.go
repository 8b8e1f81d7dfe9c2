package smtpserver

import "syscall"

// socketGone are the socket errors of a client that went away, as Windows
// reports them: a reset, or a connection the client aborted.
var socketGone = []error{syscall.WSAECONNRESET, syscall.WSAECONNABORTED}
