package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

// checkStreamed compares the streamed sendMail request of res with what
// encoding/json writes for the request in memory, byte for byte.
func checkStreamed(t testing.TB, res *Result) {
	t.Helper()
	for _, save := range []bool{false, true} {
		req, err := res.SendMailRequest(save)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := res.WriteSendMailRequest(&got, save); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("streamed request differs from encoding/json:\n got %.300q\nwant %.300q", got.Bytes(), want)
		}
		if n := res.SendMailRequestSize(false); !save && n != int64(len(want)) {
			t.Fatalf("SendMailRequestSize %d, request is %d bytes", n, len(want))
		}
	}
}

func TestStreamedRequestCorpus(t *testing.T) {
	for _, path := range corpusFiles(t) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		res, err := convertGuarded(t, raw, corpusEnvelope(t, path, raw), Options{})
		if err != nil {
			continue
		}
		checkStreamed(t, res)
	}
}

// awkward is text that tests every escape: controls, NUL, HTML characters,
// quotes, invalid UTF-8, U+2028, and multi-byte characters and invalid
// bytes next to each other and to escapes, at the start and the end.
func awkward() string {
	var b strings.Builder
	b.WriteString("\x00\x01\b\f\n\r\t\"\\<>&\u2028\u2029\x7f\xff\xc3(é€😀")
	for b.Len() < 100<<10 {
		b.WriteString("abc€😀\x80\x80\x80\x80\x80é<\u2028\xe2\x80")
	}
	b.WriteString(strings.Repeat("\x80", 7))
	return b.String()
}

// TestStringEscapesAsEncodingJSON compares the writer's strings, and its
// count of them when it only counts, with encoding/json's for every byte
// alone and after a character, and for every character of the BMP's
// edges and beyond.
func TestStringEscapesAsEncodingJSON(t *testing.T) {
	var texts []string
	for c := range 256 {
		texts = append(texts, string([]byte{byte(c)}), "é"+string([]byte{byte(c)})+"a", string([]byte{0xe2, 0x80, byte(c)}))
	}
	for _, r := range []rune{0x7f, 0x80, 0x7ff, 0x800, 0x2027, 0x2028, 0x2029, 0x202a, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff} {
		texts = append(texts, string(r), "<"+string(r)+">")
	}
	for _, s := range texts {
		want, _ := json.Marshal(s)
		var got bytes.Buffer
		j := newJSONWriter(&got)
		j.str(s)
		if !bytes.Equal(got.Bytes(), want) || j.n != int64(len(want)) {
			t.Errorf("%q: wrote %q (%d bytes counted), encoding/json %q", s, got.Bytes(), j.n, want)
		}
		counter := newJSONWriter(nil)
		counter.str(s)
		if counter.n != int64(len(want)) {
			t.Errorf("%q: counted %d bytes without writing, encoding/json wrote %d", s, counter.n, len(want))
		}
	}
}

func TestStreamedRequestEveryField(t *testing.T) {
	text := awkward()
	addr := func(name string) Recipient {
		return Recipient{EmailAddress: EmailAddress{Name: name, Address: "a<b>@contoso.com"}}
	}
	m := Message{
		Subject:                text,
		Body:                   ItemBody{ContentType: "html", Content: text + text},
		From:                   &Recipient{EmailAddress: EmailAddress{Address: "scanner@contoso.com"}},
		ToRecipients:           []Recipient{addr("Ann \"A\""), addr("")},
		CcRecipients:           []Recipient{addr("Bob")},
		BccRecipients:          []Recipient{addr(""), addr("Éva")},
		ReplyTo:                []Recipient{addr("R")},
		Importance:             "high",
		InternetMessageID:      "<id@device>",
		InternetMessageHeaders: []Header{{"X-A", "1"}, {"X-B", "<&>"}},
	}
	// Every field set: a field added to Message must be added to the
	// writer too, or this test fails.
	v := reflect.ValueOf(m)
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; name != "Attachments" && v.Field(i).IsZero() {
			t.Fatalf("field %s not set", name)
		}
	}
	data := []byte(text)
	res := &Result{Message: m, Attachments: []Attachment{
		{Name: text, ContentType: "text/plain", IsInline: true, ContentID: "c<1>", Size: int64(len(data)),
			Open: bytesOpener(data)},
		{Name: "empty", Size: 0, Open: bytesOpener(nil)},
		{Name: "two", ContentType: "application/pdf", Size: 2, Open: bytesOpener([]byte{0, 1})},
	}}
	checkStreamed(t, res)
	checkStreamed(t, &Result{})

	var draft bytes.Buffer
	if err := WriteMessage(&draft, &m, res.Attachments[2:]); err != nil {
		t.Fatal(err)
	}
	req, _ := res.SendMailRequest(false)
	withOne := req.Message
	withOne.Attachments = withOne.Attachments[2:]
	if want, _ := json.Marshal(withOne); !bytes.Equal(draft.Bytes(), want) {
		t.Errorf("WriteMessage differs from encoding/json")
	}
	if n := MessageSize(&m, res.Attachments[2:]); n != int64(draft.Len()) {
		t.Errorf("MessageSize %d, message is %d bytes", n, draft.Len())
	}
	for i, a := range res.Attachments {
		var got bytes.Buffer
		if err := a.WriteJSON(&got); err != nil {
			t.Fatal(err)
		}
		if want, _ := json.Marshal(req.Message.Attachments[i]); !bytes.Equal(got.Bytes(), want) {
			t.Errorf("attachment %d: WriteJSON differs from encoding/json", i)
		}
		if n := a.EncodedSize(); n != int64(got.Len()) {
			t.Errorf("attachment %d: EncodedSize %d, written %d", i, n, got.Len())
		}
	}
}

// A source that no longer holds what was measured fails the request
// rather than sending a short or malformed body.
func TestStreamedRequestSourceErrors(t *testing.T) {
	gone := errors.New("spool file gone")
	tests := []struct {
		name string
		a    Attachment
	}{
		{"open fails", Attachment{Name: "a", Size: 3, Open: func() (io.ReadCloser, error) { return nil, gone }}},
		{"short", Attachment{Name: "a", Size: 3, Open: bytesOpener([]byte{1, 2})}},
	}
	for _, tt := range tests {
		res := &Result{Attachments: []Attachment{tt.a}}
		var se *SourceError
		if err := res.WriteSendMailRequest(io.Discard, false); !errors.As(err, &se) {
			t.Errorf("%s: error %v, want a *SourceError", tt.name, err)
		}
	}
}

// Text that grows in its conversion to UTF-8 can take the body past its
// bound: a Latin-1 part of 3/4 of the bound becomes 3/2 of it. The text
// parts after it still travel, as attachments.
func TestBodyTextGrownPastTheBound(t *testing.T) {
	latin1 := strings.Repeat("\xe9", maxBodyBytes*3/4)
	raw := "To: a@contoso.com\nContent-Type: multipart/mixed; boundary=b\n\n" +
		"--b\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n" + latin1 +
		"\n--b\nContent-Type: text/plain\n\nafter it\n--b--\n"
	res := convertString(t, raw, testEnvelope)
	if n := len(res.Message.Body.Content); n != 2*len(latin1) {
		t.Errorf("body of %d bytes, want the Latin-1 part in UTF-8, %d", n, 2*len(latin1))
	}
	if len(res.Attachments) != 1 || res.Attachments[0].Size != int64(len("after it")) {
		t.Errorf("attachments %+v, want the second text part", res.Attachments)
	}
}

// Text kept in memory is bounded per message, not per part: five text
// parts of 3/8 of the bound each give a body of the first two and three
// attachments streamed from the source, each whole.
func TestBodyTextBoundedPerMessage(t *testing.T) {
	part := strings.Repeat("0123456789abcde\n", maxBodyBytes*3/8/16)
	var b strings.Builder
	b.WriteString("To: a@contoso.com\nContent-Type: multipart/mixed; boundary=b\n\n")
	for range 5 {
		b.WriteString("--b\nContent-Type: text/plain\n\n" + part)
	}
	b.WriteString("--b--\n")
	res := convertString(t, b.String(), testEnvelope)
	if n := len(res.Message.Body.Content); n > maxBodyBytes {
		t.Errorf("body of %d bytes kept in memory, limit %d", n, maxBodyBytes)
	}
	total := int64(len(res.Message.Body.Content))
	for _, a := range res.Attachments {
		r, err := a.Open()
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != a.Size {
			t.Fatalf("%s: read %d (%v), Size %d", a.Name, n, err, a.Size)
		}
		total += n
	}
	if len(res.Attachments) != 3 || total < int64(5*len(part)) {
		t.Errorf("%d attachments and %d bytes of text in all, want 3 and %d", len(res.Attachments), total, 5*len(part))
	}
}
