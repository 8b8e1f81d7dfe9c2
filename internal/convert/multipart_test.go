package convert

import (
	"io"
	"strings"
	"testing"
)

// TestLenientMultipart checks that damage in one part costs no other part.
func TestLenientMultipart(t *testing.T) {
	tests := []struct {
		name, parts, body string
		want              []string // name:content of each attachment
	}{
		{
			name:  "part header line that is not a field starts the part body",
			parts: "--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/pdf\nbroken line\nPDF\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "hi", want: []string{"attachment-1.pdf:broken line\nPDF", "x.png:PNG"},
		},
		{
			name:  "part header starting with white space",
			parts: "--b\n  Content-Type: image/png\n\nPNG\n--b\nContent-Type: image/gif; name=y.gif\n\nGIF\n--b--\n",
			body:  "  Content-Type: image/png\n\nPNG", want: []string{"y.gif:GIF"},
		},
		{
			name:  "preamble line longer than any buffer",
			parts: strings.Repeat("x", 100000) + "\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "delimiter with trailing white space, epilogue ignored",
			parts: "--b  \t\nContent-Type: text/plain\n\nhi\n--b \nContent-Type: image/png; name=x.png\n\nPNG\n--b-- \t\r\nepilogue\n--b\nContent-Type: image/png; name=late.png\n\nLATE\n",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "lines that only look like delimiters stay in the body",
			parts: "--b\nContent-Type: text/plain\n\n--bx\n-- b\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "--bx\n-- b", want: []string{"x.png:PNG"},
		},
		{
			name:  "a line that goes on after the boundary is body text",
			parts: "--b\nContent-Type: text/plain\n\nhi\n--b junk\n--b-1\n--b--x\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "hi\n--b junk\n--b-1\n--b--x", want: []string{"x.png:PNG"},
		},
		{
			name:  "missing final boundary",
			parts: "--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: image/png; name=x.png\n\nPNG",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "a boundary that starts another one",
			parts: "--b\nContent-Type: multipart/alternative; boundary=b-1\n\n--b-1\nContent-Type: text/plain\n\nhi\n--b-1--\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "doubled delimiter and an empty part",
			parts: "--b\n--b\nContent-Type: text/plain\n\nhi\n--b\n\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "bare LF delimiter after CRLF ones",
			parts: "--b\r\nContent-Type: text/plain\r\n\r\nhi\n--b\nContent-Type: image/png; name=x.png\r\n\r\nPNG\r\n--b--\r\n",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "inner multipart without its closing delimiter",
			parts: "--b\nContent-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "boundary never appears: the body is text",
			parts: "just text\n--c\n",
			body:  "just text\n--c\n", want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "To: a@contoso.com\nContent-Type: multipart/mixed; boundary=b\n\n" + tt.parts
			res, err := convertGuarded(t, []byte(raw), testEnvelope, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Message.Body.Content != tt.body {
				t.Errorf("body %q, want %q", res.Message.Body.Content, tt.body)
			}
			var got []string
			for _, a := range res.Attachments {
				r, err := a.Open()
				if err != nil {
					t.Fatal(err)
				}
				data, _ := io.ReadAll(r)
				r.Close()
				if int64(len(data)) != a.Size {
					t.Errorf("%s: Size %d, Open gave %d bytes", a.Name, a.Size, len(data))
				}
				got = append(got, a.Name+":"+string(data))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("attachments %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMaxParts checks that the parts beyond the limit arrive together, as
// one message holding the rest of the original.
func TestMaxParts(t *testing.T) {
	raw := "To: a@contoso.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
		"--b\r\nContent-Type: image/png; name=1.png\r\n\r\nONE\r\n" +
		"--b\r\nContent-Type: image/png; name=2.png\r\n\r\nTWO\r\n" +
		"--b\r\nContent-Type: image/png; name=3.png\r\n\r\nTHREE\r\n--b--\r\n"
	res, err := convertGuarded(t, []byte(raw), testEnvelope, Options{MaxParts: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Message.Body.Content != "hi" || len(res.Attachments) != 2 || res.Attachments[0].Name != "1.png" {
		t.Fatalf("body %q, attachments %+v", res.Message.Body.Content, res.Attachments)
	}
	rest := res.Attachments[1]
	if rest.Name != "more-parts.eml" || rest.ContentType != "message/rfc822" {
		t.Errorf("attachment %q %q, want more-parts.eml", rest.Name, rest.ContentType)
	}
	r, err := rest.Open()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	r.Close()
	inner, err := convertGuarded(t, data, testEnvelope, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range inner.Attachments {
		names = append(names, a.Name)
	}
	if got := strings.Join(names, ","); got != "2.png,3.png" {
		t.Errorf("more-parts.eml holds %s, want 2.png,3.png:\n%s", got, data)
	}
}
