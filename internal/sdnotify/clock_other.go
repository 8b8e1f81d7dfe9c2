//go:build !unix

package sdnotify

import "errors"

// monotonicUsec has no systemd to serve off Unix, where NOTIFY_SOCKET is
// never set.
func monotonicUsec() (int64, error) {
	return 0, errors.New("systemd notify needs Unix")
}
