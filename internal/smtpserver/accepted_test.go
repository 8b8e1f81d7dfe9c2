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
