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
			parts: "--b  \t\nContent-Type: text/plain\n\nhi\n--b \nContent-Type: image/png; name=x.png\n\nPNG\n--b--  trailing junk\n--b\nContent-Type: image/png; name=late.png\n\nLATE\n",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "lines that only look like delimiters stay in the body",
			parts: "--b\nContent-Type: text/plain\n\n--bx\n-- b\n--b\nContent-Type: image/png; name=x.png\n\nPNG\n--b--\n",
			body:  "--bx\n-- b", want: []string{"x.png:PNG"},
		},
		{
			name:  "junk after a delimiter is dropped",
			parts: "--b\nContent-Type: text/plain\n\nhi\n--b junk\nContent-Type: image/png; name=x.png\n\nPNG\n--b-junk\nContent-Type: image/gif; name=y.gif\n\nGIF\n--b--\n",
			body:  "hi", want: []string{"x.png:PNG", "y.gif:GIF"},
		},
		{
			name:  "missing final boundary",
			parts: "--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: image/png; name=x.png\n\nPNG",
			body:  "hi", want: []string{"x.png:PNG"},
		},
		{
			name:  "boundary never appears",
			parts: "just text\n",
			body:  "", want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "To: a@contoso.com\nContent-Type: multipart/mixed; boundary=b\n\n" + tt.parts
			res, err := Convert(bytesOpener([]byte(raw)), testEnvelope)
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
