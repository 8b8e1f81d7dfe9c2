package convert

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/quotedprintable"
	"os"
	"testing"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// FuzzConvert feeds arbitrary bytes to the converter, with a part limit
// (0: none): it must never panic nor read outside the message, and
// whatever it returns must be sendable and self-consistent, each
// attachment opening to the bytes a plain decode of its part gives.
func FuzzConvert(f *testing.F) {
	for _, path := range corpusFiles(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint8(0))
		f.Add(data, uint8(2))
	}
	env := &envelope.Envelope{Mailbox: "scanner@contoso.com", AllowedSenders: []string{"*@contoso.com"},
		Recipients: []string{"alice@contoso.com", "audit@contoso.com"}}
	f.Fuzz(func(t *testing.T, raw []byte, maxParts uint8) {
		// convertGuarded checks the reads and that each attachment opens
		// to Size bytes.
		res, err := convertGuarded(t, raw, env, Options{MaxParts: int(maxParts)})
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
		if n := res.SendMailRequestSize(false); n != int64(len(data)) {
			t.Fatalf("SendMailRequestSize %d, request is %d bytes", n, len(data))
		}
		checkStreamed(t, res)
		for i, a := range res.Attachments {
			if a.part == nil {
				continue
			}
			p := a.part
			if p.headerStart > p.bodyStart || p.bodyStart > p.bodyEnd || p.bodyEnd > int64(len(raw)) {
				t.Fatalf("attachment %q: part at %d, body %d to %d, in %d bytes", a.Name, p.headerStart, p.bodyStart, p.bodyEnd, len(raw))
			}
			want := referenceDecode(raw[p.bodyStart:p.bodyEnd], p.encoding)
			if got := req.Message.Attachments[i].ContentBytes; !bytes.Equal(got, want) {
				t.Fatalf("attachment %q (%s) opens to %q, its part decodes to %q", a.Name, p.encoding, got, want)
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

// referenceDecode decodes a whole part body at once, by rules simpler than
// the streaming decoders: base64 keeps the alphabet up to the padding and
// decodes every complete group of characters; quoted-printable keeps what
// decodes before an error; uuencoding decodes the lines between begin and
// end.
func referenceDecode(body []byte, encoding string) []byte {
	switch encoding {
	case "base64":
		var chars []byte
		padded := false
		for _, c := range body {
			switch {
			case c == '=':
				padded = true
			case padded && !isSpace(c):
				return decodeBase64Groups(chars)
			case padded:
			case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
				chars = append(chars, c)
			}
		}
		return decodeBase64Groups(chars)
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		return out
	case "x-uuencode", "uuencode", "x-uue":
		var out []byte
		begun := false
		for _, l := range bytes.Split(body, []byte("\n")) {
			l = bytes.TrimRight(l, "\r")
			switch {
			case !begun:
				begun = bytes.HasPrefix(l, []byte("begin "))
			case string(bytes.TrimSpace(l)) == "end":
				return out
			case len(l) > 0:
				out = uudecodeLine(out, l)
			}
		}
		return out
	}
	return body
}

// decodeBase64Groups decodes unpadded base64, dropping a last lone
// character, which carries no whole byte.
func decodeBase64Groups(chars []byte) []byte {
	if len(chars)%4 == 1 {
		chars = chars[:len(chars)-1]
	}
	out, err := base64.RawStdEncoding.DecodeString(string(chars))
	if err != nil {
		panic(err)
	}
	return out
}
