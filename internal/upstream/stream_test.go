package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// The choice between sendMail and a draft counts the body as JSON escapes
// it: 500 KB of "<" is 3 MB in JSON and fits one request; 700 KB is 4.2 MB,
// too much for any request, so the HTML travels as a file on a draft.
func TestEscapedSizeChoosesThePath(t *testing.T) {
	for _, size := range []int{500_000, 700_000} {
		fake := graphtest.New(t)
		g := newGraph(t, fake, fake.GraphConfig(t))
		html := strings.Repeat("<", size)
		msg := message("html")
		msg.Message.Body = convert.ItemBody{ContentType: "html", Content: html}
		if _, err := g.Send(context.Background(), testEnv, convertedMessage(msg)); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		sent := fake.Sent()
		if len(sent) != 1 {
			t.Fatalf("%d messages sent", len(sent))
		}
		m := sent[0].Message
		switch {
		case size == 500_000 && (sent[0].Kind != "json" || m.Body.Content != html):
			t.Errorf("%d bytes of '<': sent as %s, want json with the body intact", size, sent[0].Kind)
		case size == 700_000 && (sent[0].Kind != "draft" || len(m.Attachments) != 1 ||
			m.Attachments[0].Name != "message.html" || string(m.Attachments[0].ContentBytes) != html):
			t.Errorf("%d bytes of '<': sent as %s, want a draft with message.html", size, sent[0].Kind)
		}
	}
}

// A body whose JSON alone is over Graph's request limit (1.5 MB of NUL
// bytes escape to 9 MB) cannot travel as a body: it arrives whole as a
// file, next to the other attachments.
func TestBodyTooLargeForAnyRequestBecomesAFile(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	text := strings.Repeat("\x00", 1_500_000)
	pdf := patterned(10_000)
	msg := message("nul", bytesAttachment("scan.pdf", pdf))
	msg.Message.Body.Content = text
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(msg)); err != nil {
		t.Fatal(err)
	}
	sent := fake.Sent()
	if len(sent) != 1 || sent[0].Kind != "draft" {
		t.Fatalf("sent = %+v", sent)
	}
	m := sent[0].Message
	if !strings.Contains(m.Body.Content, "message.txt") {
		t.Errorf("body = %q, want a pointer to message.txt", m.Body.Content)
	}
	got := map[string][]byte{}
	for _, a := range m.Attachments {
		got[a.Name] = a.ContentBytes
	}
	if !bytes.Equal(got["message.txt"], []byte(text)) || !bytes.Equal(got["scan.pdf"], pdf) {
		t.Errorf("attachments arrived as %d and %d bytes, want %d and %d", len(got["message.txt"]), len(got["scan.pdf"]), len(text), len(pdf))
	}
}

// A spool file that fails while the request streams is a temporary
// failure of ours, not a message Graph refused.
func TestSpoolFailureWhileStreaming(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	broken := convert.Attachment{Name: "scan.pdf", Size: 100_000, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(patterned(50_000)), errReader{})), nil
	}}
	_, err := g.Send(context.Background(), testEnv, convertedMessage(message("broken", broken)))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTransient || !strings.Contains(e.Error(), "spool") {
		t.Fatalf("error = %v, want a temporary spool failure", err)
	}
	if len(fake.Sent()) != 0 {
		t.Error("a message with a broken attachment was sent")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("input/output error") }

// Graph's error codes reach classify from a streamed request as they do
// from the SDK.
func TestStreamedRequestErrorCodes(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: http.StatusForbidden, Code: "ErrorSendAsDenied", Message: "no"})
	_, err := g.Send(context.Background(), testEnv, convertedMessage(message("denied")))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindMessage || e.Status != http.StatusForbidden || e.Code != "ErrorSendAsDenied" || e.RequestID == "" {
		t.Fatalf("error = %#v", err)
	}
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: http.StatusTooManyRequests, Code: "TooManyRequests", RetryAfter: "7"})
	_, err = g.Send(context.Background(), testEnv, convertedMessage(message("throttled")))
	if !errors.As(err, &e) || e.Kind != KindTransient || e.RetryAfter.Seconds() != 7 {
		t.Fatalf("error = %#v", err)
	}
}
