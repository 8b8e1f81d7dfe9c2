package upstream

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Outbox is a Target for trial runs without a tenant: it writes, per
// message, exactly the body a Graph sendMail request would carry, streamed
// like the request itself: ID.json for JSON, ID.mime for signed or
// encrypted mail (base64 MIME).
type Outbox struct {
	dir string
}

// NewOutbox creates dir if needed.
func NewOutbox(dir string) (*Outbox, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &Outbox{dir: dir}, nil
}

// Way is the outbox folder.
func (o *Outbox) Way() Way { return Way{Via: "outbox", Address: o.dir} }

func (o *Outbox) Send(_ context.Context, env *envelope.Envelope, m Message) (Receipt, error) {
	msg, err := m.Converted()
	if err != nil {
		return Receipt{}, err
	}
	name := env.ID + ".json"
	write := func(w io.Writer) error { return msg.WriteSendMailRequest(w, true) }
	if msg.MIME != nil {
		name = env.ID + ".mime"
		write = func(w io.Writer) error { return writeBase64(w, msg.MIME) }
	}
	err = writeFileAtomic(filepath.Join(o.dir, name), write)
	var source *convert.SourceError
	if errors.As(err, &source) {
		return Receipt{}, &Error{Message: "read message from the spool", Err: err, Kind: KindTransient}
	}
	if err != nil {
		return Receipt{}, &Error{Message: "write outbox file", Err: err, Kind: KindTransient}
	}
	return Receipt{Status: http.StatusAccepted}, nil
}

// writeBase64 writes what open streams in standard base64, as Graph's
// MIME sendMail takes it.
func writeBase64(w io.Writer, open convert.Opener) error {
	r, err := open()
	if err != nil {
		return &convert.SourceError{Name: "message", Err: err}
	}
	defer r.Close()
	enc := base64.NewEncoder(base64.StdEncoding, w)
	if _, err := io.Copy(enc, r); err != nil {
		return err
	}
	return enc.Close()
}

// writeFileAtomic writes what write produces so that path holds either
// nothing or all of it, even across a crash: temporary file, fsync,
// rename, fsync folder.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, streamBuffer)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
