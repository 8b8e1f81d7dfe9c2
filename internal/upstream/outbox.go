package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Outbox is a Target for trial runs without a tenant: it writes, per
// message, exactly the body a Graph sendMail request would carry:
// ID.json for JSON, ID.mime for signed or encrypted mail (base64 MIME).
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

func (o *Outbox) Send(_ context.Context, env *envelope.Envelope, msg *convert.Result) (Receipt, error) {
	var name string
	var body []byte
	if msg.MIME != nil {
		r, err := msg.MIME()
		if err != nil {
			return Receipt{}, &Error{Message: "open message in the spool", Err: err, Kind: KindTransient}
		}
		raw, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return Receipt{}, &Error{Message: "read message from the spool", Err: err, Kind: KindTransient}
		}
		name, body = env.ID+".mime", []byte(base64.StdEncoding.EncodeToString(raw))
	} else {
		req, err := msg.SendMailRequest(true)
		if err != nil {
			return Receipt{}, &Error{Message: "read attachments from the spool", Err: err, Kind: KindTransient}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // keep HTML bodies readable for the admin
		enc.SetIndent("", "  ")
		if err := enc.Encode(req); err != nil {
			return Receipt{}, &Error{Kind: KindMessage, Message: "encode message", Err: err}
		}
		body = buf.Bytes()
		name = env.ID + ".json"
	}
	if err := writeFileAtomic(filepath.Join(o.dir, name), body); err != nil {
		return Receipt{}, &Error{Message: "write outbox file", Err: err, Kind: KindTransient}
	}
	return Receipt{Status: http.StatusAccepted}, nil
}

// writeFileAtomic writes data so that path holds either nothing or all of
// it, even across a crash: temporary file, fsync, rename, fsync folder.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
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
