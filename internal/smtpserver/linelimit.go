package smtpserver

import (
	"io"
	"reflect"
	"unsafe"

	"github.com/emersion/go-smtp"
)

// go-smtp v0.25 applies Server.MaxLineLength to command lines and DATA
// lines alike (0 disables both). BDAT lifts it while a chunk is read; DATA
// does not, and no setting does. Legacy applications write whole HTML
// documents on one line, so Data lifts it the way go-smtp's BDAT does: on
// the connection's line-limit reader, while the message is read. Nothing
// grows with a line during DATA: go-smtp's DATA reader holds no line in
// memory, and MaxMessageBytes bounds the message. Commands keep the limit.
//
// go-smtp keeps that reader unexported, hence reflection. If a go-smtp
// upgrade renames it, lineLimit returns nil, long DATA lines are refused
// as before, and TestLongDataLine fails.

// lineLimit returns the line limit of c's line reader, or nil.
func lineLimit(c *smtp.Conn) *int {
	reader := reflect.ValueOf(c).Elem().FieldByName("lineLimitReader")
	if !reader.IsValid() || reader.Kind() != reflect.Pointer || reader.IsNil() {
		return nil
	}
	limit := reader.Elem().FieldByName("LineLimit")
	if !limit.IsValid() || limit.Kind() != reflect.Int {
		return nil
	}
	return (*int)(unsafe.Pointer(limit.UnsafeAddr()))
}

// liftLineLimit lifts c's line limit while DATA reads r and returns what
// puts it back. BDAT (r is then go-smtp's pipe) lifts it on its own, on
// another goroutine: it is left alone.
func liftLineLimit(c *smtp.Conn, r io.Reader) (restore func()) {
	limit := lineLimit(c)
	if _, bdat := r.(*io.PipeReader); bdat || limit == nil {
		return func() {}
	}
	saved := *limit
	*limit = 0
	return func() { *limit = saved }
}
