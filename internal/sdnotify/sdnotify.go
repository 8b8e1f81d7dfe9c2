// Package sdnotify tells systemd about a running gateway's state, for units
// of Type=notify: one datagram per state change to the unix socket named by
// NOTIFY_SOCKET. No client library is needed for a few lines of protocol.
package sdnotify

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
)

// SocketEnv names the socket systemd listens on; a leading '@' means the
// Linux abstract namespace.
const SocketEnv = "NOTIFY_SOCKET"

// Notifier sends state changes to systemd. Its methods match the gateway's
// lifecycle; a failed send is logged, never fatal, since the gateway runs on
// whether or not systemd hears it.
type Notifier struct {
	socket string // as NOTIFY_SOCKET spells it, for logs
	addr   *net.UnixAddr
	log    *slog.Logger
}

// FromEnv returns a Notifier for the socket in NOTIFY_SOCKET, or nil when the
// gateway was not started by systemd with Type=notify.
func FromEnv(logger *slog.Logger) *Notifier {
	socket := os.Getenv(SocketEnv)
	if socket == "" {
		return nil
	}
	return New(socket, logger)
}

// New returns a Notifier for socket, a path or '@' and an abstract name.
func New(socket string, logger *slog.Logger) *Notifier {
	name := socket
	if strings.HasPrefix(name, "@") {
		// Go spells the abstract namespace with a leading NUL byte.
		name = "\x00" + name[1:]
	}
	return &Notifier{socket: socket, addr: &net.UnixAddr{Name: name, Net: "unixgram"}, log: logger}
}

// Ready says the listeners are open and mail is accepted.
func (n *Notifier) Ready() { n.send("READY=1") }

// Reloading says a reload starts. systemd wants the monotonic time with it
// to tell this reload from an earlier one.
func (n *Notifier) Reloading() {
	usec, err := monotonicUsec()
	if err != nil {
		n.log.Warn("systemd notify", "state", "RELOADING=1", "error", err)
		return
	}
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", usec))
}

// Reloaded says a reload ended, applied or refused: the gateway is ready
// again either way.
func (n *Notifier) Reloaded() { n.send("READY=1") }

// Stopping says shutdown starts.
func (n *Notifier) Stopping() { n.send("STOPPING=1") }

func (n *Notifier) send(state string) {
	if err := n.write(state); err != nil {
		n.log.Warn("systemd notify", "state", state, "socket", n.socket, "error", err)
	}
}

func (n *Notifier) write(state string) error {
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
