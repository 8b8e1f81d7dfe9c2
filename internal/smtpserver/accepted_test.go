package smtpserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/trace"
)

const tracedMessage = "From: Scanner <scanner@contoso.com>\r\n" +
	"To: bob@contoso.com\r\n" +
	"Message-ID: <scan-0042@scanner.contoso.com>\r\n" +
	"Subject: =?UTF-8?Q?Gehaltsabrechnung_M=C3=A4rz?=\r\n" +
	"\r\n" +
	"scan attached\r\n"

func TestAcceptedLineAndTraceNameSenderRecipientsAndMessageID(t *testing.T) {
	for _, subjects := range []bool{false, true} {
		t.Run(fmt.Sprint("subjects=", subjects), func(t *testing.T) {
			ts := startServer(t, parseConfig(t, fmt.Sprintf("[log]\nsubjects = %v\n", subjects)))
			dir := t.TempDir()
			w, err := trace.Open(dir, 30, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			ts.SetTrace(w)
			c := ts.dial(t, plainListener)
			rcpts := []string{"bob@contoso.com", "Carol\u202e@contoso.com"}
			status, err := send(c, "scanner@contoso.com", rcpts, tracedMessage)
			if err != nil {
				t.Fatal(err)
			}
			id := queueID(t, status)
			c.Quit()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			logs := ts.logs.String()
			for _, want := range []string{"msg=accepted", "id=" + id, "from=<scanner@contoso.com>",
				`to=bob@contoso.com,Carol\u202e@contoso.com`, "recipients=2", "message_id=<scan-0042@scanner.contoso.com>"} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %s:\n%s", want, logs)
				}
			}
			if got := strings.Contains(logs, "Gehaltsabrechnung März"); got != subjects {
				t.Errorf("subject logged: %v, want %v:\n%s", got, subjects, logs)
			}

			res, err := trace.Search(dir, trace.Query{To: "bob@contoso.com"})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Messages) != 1 {
				t.Fatalf("trace has %d messages to bob@, want 1", len(res.Messages))
			}
			e := res.Messages[0].Accepted
			if e.ID != id || e.From != "scanner@contoso.com" || len(e.To) != 2 || e.To[1] != rcpts[1] ||
				e.MessageID != "<scan-0042@scanner.contoso.com>" || e.Identity != "network:127.0.0.1/32" ||
				!strings.HasPrefix(e.Client, "127.0.0.1:") || e.Size != int64(len(tracedMessage)) {
				t.Errorf("trace event = %+v", e)
			}
			if wantSubject := map[bool]string{true: "Gehaltsabrechnung März"}[subjects]; e.Subject != wantSubject {
				t.Errorf("trace subject %q, want %q", e.Subject, wantSubject)
			}
		})
	}
}

func TestLoggedRecipientsKeepTheFirstTwentyAndCount(t *testing.T) {
	var rcpts []string
	for i := range 23 {
		rcpts = append(rcpts, fmt.Sprintf("user%d@contoso.com", i))
	}
	got := loggedRecipients(rcpts)
	if !strings.HasPrefix(got, "user0@contoso.com,user1@contoso.com,") || !strings.HasSuffix(got, ",user19@contoso.com,…(3 more)") {
		t.Errorf("loggedRecipients = %q", got)
	}
	long := strings.Repeat("x", 300) + "@contoso.com"
	if got := loggedRecipients([]string{long}); !strings.Contains(got, "…(312 bytes)") {
		t.Errorf("a long recipient is not bounded: %q", got)
	}
}

// TestHeaderCaptureKeepsOnlyTheHeader feeds messages to headerCapture in
// two pieces cut at every place, and one byte at a time: what it keeps is
// the header with its blank line, never the body, however the blank line
// is split.
func TestHeaderCaptureKeepsOnlyTheHeader(t *testing.T) {
	for _, tc := range []struct{ message, header string }{
		{"Subject: a\r\nFrom: b@c\r\n\r\nbody\r\n\r\nmore\r\n", "Subject: a\r\nFrom: b@c\r\n\r\n"},
		{"Subject: a\n\nbody\r\n\r\n", "Subject: a\n\n"},
		{"Subject: a\r\n\nbody\n\n", "Subject: a\r\n\n"},
		{"\r\n\r\nbody", "\r\n\r\n"},
		{"Subject: no body\r\n", "Subject: no body\r\n"},
	} {
		for cut := 0; cut <= len(tc.message); cut++ {
			var h headerCapture
			h.Write([]byte(tc.message[:cut]))
			h.Write([]byte(tc.message[cut:]))
			if string(h.buf) != tc.header {
				t.Fatalf("%q cut at %d: kept %q, want %q", tc.message, cut, h.buf, tc.header)
			}
		}
		var h headerCapture
		for i := range len(tc.message) {
			h.Write([]byte{tc.message[i]})
		}
		if string(h.buf) != tc.header {
			t.Fatalf("%q byte by byte: kept %q, want %q", tc.message, h.buf, tc.header)
		}
	}
}

// TestHeaderCaptureOverflow keeps maxCheckedHeader bytes of a header that
// never ends, and says so.
func TestHeaderCaptureOverflow(t *testing.T) {
	var h headerCapture
	line := []byte("X-Long: " + strings.Repeat("a", 1000) + "\r\n")
	for range maxCheckedHeader/len(line) + 2 {
		h.Write(line)
	}
	if !h.overflow || len(h.buf) != maxCheckedHeader {
		t.Fatalf("overflow %v, kept %d bytes, want %d", h.overflow, len(h.buf), maxCheckedHeader)
	}
}
