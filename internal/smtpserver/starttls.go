package smtpserver

import (
	"io"
	"net/textproto"
	"reflect"
	"unsafe"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/clients"
)

// go-smtp v0.25 performs STARTTLS itself: it puts a *tls.Conn over the
// connection it was given (which holds the watch, see Server.accept) and
// reads and writes through a new textproto.Conn over that TLS. The watch
// then sits under TLS and sees only ciphertext. watchAboveTLS puts the
// watch back above TLS, into go-smtp's reader and writer, so that the
// replies after STARTTLS count and are logged too.
//
// go-smtp keeps that textproto.Conn unexported, hence reflection. If a
// go-smtp upgrade renames it, watchAboveTLS returns false, the session
// closes the connection after STARTTLS rather than serve it unwatched, and
// TestErrorsCountedAfterSTARTTLS fails.

// watchAboveTLS wraps c's reader and writer with w; false when go-smtp's
// fields are not what this was written for.
func watchAboveTLS(c *smtp.Conn, w *clients.Watch) bool {
	field := reflect.ValueOf(c).Elem().FieldByName("text")
	if !field.IsValid() || field.Type() != reflect.TypeOf((*textproto.Conn)(nil)) {
		return false
	}
	text := (**textproto.Conn)(unsafe.Pointer(field.UnsafeAddr()))
	old := *text
	if old == nil {
		return false
	}
	// Bytes the old reader holds already are read through the watch; the
	// old writer is flushed after every reply, so it holds nothing.
	*text = textproto.NewConn(struct {
		io.Reader
		io.Writer
		io.Closer
	}{
		Reader: w.Reader(old.R),
		Writer: w.Writer(c.Conn()),
		Closer: c.Conn(),
	})
	return true
}
