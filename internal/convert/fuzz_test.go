package convert

import (
	"encoding/json"
	"io"
	"os"
	"testing"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// FuzzConvert feeds arbitrary bytes to the converter: it must never panic,
// and whatever it returns must be sendable and self-consistent.
func FuzzConvert(f *testing.F) {
	for _, path := range corpusFiles(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	env := &envelope.Envelope{Mailbox: "scanner@contoso.com", AllowedSenders: []string{"*@contoso.com"},
		Recipients: []string{"alice@contoso.com", "audit@contoso.com"}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		res, err := Convert(bytesOpener(raw), env)
		if err != nil {
			return
		}
		req, err := res.SendMailRequest(false)
		if err != nil {
			t.Fatalf("attachments do not load: %v", err)
		}
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("request does not marshal: %v", err)
		}
		if n := res.EstimatedRequestSize(); n != int64(len(data)) {
			t.Fatalf("EstimatedRequestSize %d, request is %d bytes", n, len(data))
		}
		checkStreamed(t, res)
		for _, a := range res.Attachments {
			r, err := a.Open()
			if err != nil {
				t.Fatalf("attachment %q does not open: %v", a.Name, err)
			}
			n, err := io.Copy(io.Discard, r)
			r.Close()
			if err != nil || n != a.Size {
				t.Fatalf("attachment %q: read %d bytes (%v), Size says %d", a.Name, n, err, a.Size)
			}
		}
		if res.MIME != nil {
			r, err := res.MIME()
			if err != nil {
				t.Fatalf("MIME does not open: %v", err)
			}
			io.Copy(io.Discard, r)
			r.Close()
		}
	})
}
