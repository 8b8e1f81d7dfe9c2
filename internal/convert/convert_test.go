package convert

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

func convertString(t *testing.T, raw string, env *envelope.Envelope) *Result {
	t.Helper()
	res, err := convertGuarded(t, []byte(strings.ReplaceAll(raw, "\n", "\r\n")), env, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func addressesOf(rs []Recipient) string {
	var list []string
	for _, r := range rs {
		list = append(list, r.EmailAddress.Address)
	}
	return strings.Join(list, ",")
}

func TestRecipientsFollowTheEnvelope(t *testing.T) {
	env := &envelope.Envelope{Mailbox: "scanner@contoso.com", AllowedSenders: []string{"*@contoso.com"},
		Recipients: []string{"ALICE@contoso.com", "bob@contoso.com", "hidden@contoso.com", "hidden@contoso.com"}}
	res := convertString(t, "From: scanner@contoso.com\nTo: alice@contoso.com, stranger@example.org\nCc: Bob <bob@contoso.com>, alice@contoso.com\n\nbody\n", env)
	m := res.Message
	if got := addressesOf(m.ToRecipients); got != "alice@contoso.com" {
		t.Errorf("to = %s", got)
	}
	if got := addressesOf(m.CcRecipients); got != "bob@contoso.com" {
		t.Errorf("cc = %s", got)
	}
	if got := addressesOf(m.BccRecipients); got != "hidden@contoso.com" {
		t.Errorf("bcc = %s, want the envelope-only recipient once", got)
	}
}

func TestFromDecision(t *testing.T) {
	tests := []struct {
		name, from, wantName, wantAddress string
	}{
		{"allowed header From kept", "From: Floor 3 <floor3@contoso.com>\n", "Floor 3", "floor3@contoso.com"},
		{"foreign From becomes the mailbox", "From: CEO <ceo@example.org>\n", "CEO", "scanner@contoso.com"},
		{"missing From is the mailbox", "", "", "scanner@contoso.com"},
		{"encoded name decoded", "From: =?iso-8859-1?Q?J=FCrgen?= <j@contoso.com>\n", "Jürgen", "j@contoso.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := &envelope.Envelope{Mailbox: "scanner@contoso.com", AllowedSenders: []string{"*@contoso.com"}, Recipients: []string{"a@contoso.com"}}
			res := convertString(t, tt.from+"To: a@contoso.com\n\nbody\n", env)
			got := res.Message.From.EmailAddress
			if got.Name != tt.wantName || got.Address != tt.wantAddress {
				t.Errorf("from = %q <%s>, want %q <%s>", got.Name, got.Address, tt.wantName, tt.wantAddress)
			}
		})
	}
}

func TestImportance(t *testing.T) {
	tests := map[string]string{
		"Importance: High\n":        "high",
		"Importance: low\n":         "low",
		"X-Priority: 1 (Highest)\n": "high",
		"X-Priority: 5\n":           "low",
		"Priority: urgent\n":        "high",
		"Priority: non-urgent\n":    "low",
		"":                          "",
	}
	env := &envelope.Envelope{Mailbox: "m@contoso.com", Recipients: []string{"a@contoso.com"}}
	for header, want := range tests {
		if got := convertString(t, header+"To: a@contoso.com\n\nx\n", env).Message.Importance; got != want {
			t.Errorf("%q: importance %q, want %q", header, got, want)
		}
	}
}

func TestXHeaderLimit(t *testing.T) {
	var raw strings.Builder
	for i := range 7 {
		raw.WriteString("X-H" + string(rune('a'+i)) + ": v\n")
	}
	raw.WriteString("X-Empty:\nTo: a@contoso.com\n\nx\n")
	env := &envelope.Envelope{Mailbox: "m@contoso.com", Recipients: []string{"a@contoso.com"}}
	res := convertString(t, raw.String(), env)
	if n := len(res.Message.InternetMessageHeaders); n != maxXHeaders {
		t.Errorf("%d headers sent, want %d", n, maxXHeaders)
	}
	if got := strings.Join(res.DroppedHeaders, ","); got != "X-Hf,X-Hg" {
		t.Errorf("dropped %s, want X-Hf,X-Hg", got)
	}
}

func TestAttachmentOpensTheSameBytesTwice(t *testing.T) {
	pdf := bytes.Repeat([]byte{0, 1, 2, 0xff}, 3000)
	raw := "To: a@contoso.com\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\n" +
		"Content-Type: application/pdf\nContent-Disposition: attachment; filename*=UTF-8''b%C3%A9l.pdf\nContent-Transfer-Encoding: base64\n\n" +
		wrapBase64(pdf) + "--b--\n"
	env := &envelope.Envelope{Mailbox: "m@contoso.com", Recipients: []string{"a@contoso.com"}}
	res := convertString(t, raw, env)
	if len(res.Attachments) != 1 {
		t.Fatalf("%d attachments", len(res.Attachments))
	}
	a := res.Attachments[0]
	if a.Name != "bél.pdf" || a.Size != int64(len(pdf)) {
		t.Errorf("attachment %q of %d bytes, want bél.pdf of %d", a.Name, a.Size, len(pdf))
	}
	for range 2 {
		r, err := a.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, pdf) {
			t.Fatalf("Open read %d bytes, not the %d attached", len(got), len(pdf))
		}
	}
}

func TestEmptyMessageIsAnError(t *testing.T) {
	if _, err := Convert(bytes.NewReader(nil), 0, &envelope.Envelope{}, Options{}); err == nil {
		t.Error("empty input converted without error")
	}
}

func wrapBase64(data []byte) string {
	var b strings.Builder
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\n")
	return b.String()
}

func TestInlineOnlyWhenShown(t *testing.T) {
	raw := `To: a@contoso.com
Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html

<p><img src="CID:Logo@X"></p>
--r
Content-Type: image/png
Content-ID: <logo@x>

PNG
--r
Content-Type: image/png
Content-ID: <unused@x>
Content-Disposition: inline

PNG
--r--
`
	res := convertString(t, raw, testEnvelope)
	if a := res.Attachments; len(a) != 2 || !a[0].IsInline || a[1].IsInline || a[1].ContentID != "unused@x" {
		t.Errorf("attachments %+v: want only the referenced one inline", a)
	}
}

func TestSplitBodyJoined(t *testing.T) {
	tests := []struct {
		name, parts, body, contentType string
		attachments                    []string
	}{
		{"plain around an image", "--m\nContent-Type: text/plain\n\nLook:\n--m\nContent-Type: image/jpeg; name=IMG_0001.jpg\nContent-Disposition: inline; filename=IMG_0001.jpg\nContent-Id: <img1@x>\n\nJPG\n--m\nContent-Type: text/plain\n\nSent from my iPhone\n--m--\n",
			"Look:\r\nSent from my iPhone", "text", []string{"IMG_0001.jpg"}},
		{"html fragments", "--m\nContent-Type: text/html\n\n<p>one</p>\n--m\nContent-Type: text/html\n\n<p>two</p>\n--m--\n",
			"<p>one</p><p>two</p>", "html", nil},
		{"html after plain travels as a file", "--m\nContent-Type: text/plain\n\none\n--m\nContent-Type: text/html\n\n<p>two</p>\n--m--\n",
			"one", "text", []string{"attachment-1.html"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convertString(t, "To: a@contoso.com\nContent-Type: multipart/mixed; boundary=m\n\n"+tt.parts, testEnvelope)
			if b := res.Message.Body; b.Content != tt.body || b.ContentType != tt.contentType {
				t.Errorf("body %s %q, want %s %q", b.ContentType, b.Content, tt.contentType, tt.body)
			}
			var names []string
			for _, a := range res.Attachments {
				names = append(names, a.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.attachments, ",") {
				t.Errorf("attachments %q, want %q", names, tt.attachments)
			}
		})
	}
}

func TestOversizedTextBodyTravelsWhole(t *testing.T) {
	line := "0123456789abcdef\n"
	text := strings.Repeat(line, maxBodyBytes/len(line)+1000)
	raw := "To: a@contoso.com\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n" + text
	res := convertString(t, raw, testEnvelope)
	if len(res.Attachments) != 1 {
		t.Fatalf("%d attachments, want the text as one", len(res.Attachments))
	}
	a := res.Attachments[0]
	r, err := a.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	// convertString turned each LF into CRLF.
	want := int64(len(text) + len(text)/len(line))
	if err != nil || n != want || a.Size != want {
		t.Errorf("Size %d, read %d (%v), want %d", a.Size, n, err, want)
	}
	if a.Name != "attachment-1.txt" || a.ContentType != "text/plain; charset=iso-8859-1" {
		t.Errorf("attachment %q %q", a.Name, a.ContentType)
	}
}
