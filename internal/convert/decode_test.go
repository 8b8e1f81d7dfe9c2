package convert

import (
	"io"
	"strings"
	"testing"
)

func TestTransferDecoder(t *testing.T) {
	tests := []struct {
		name, encoding, in, want string
	}{
		{"base64 padded", "base64", "AAECAwQ=\r\n", "\x00\x01\x02\x03\x04"},
		{"base64 without padding", "base64", "AAECAwQ\r\n", "\x00\x01\x02\x03\x04"},
		{"base64 without two pads", "base64", "AAECAw", "\x00\x01\x02\x03"},
		{"base64 one pad of two", "base64", "AAECAw=", "\x00\x01\x02\x03"},
		{"base64 lone last character", "base64", "AAECA", "\x00\x01\x02"},
		{"base64 junk after padding", "base64", "AAE=\r\n--junk", "\x00\x01"},
		{"x-uuencode", "x-uuencode", "begin 644 a.txt\n%:&5L;&\\`\n`\nend\n", "hello"},
		{"uuencode, spaces stripped", "UUENCODE", "begin 600 a.txt\r\n#0V%T\r\n \r\nend\r\n", "Cat"},
		{"x-uue, no end line", "x-uue", "begin 644 a\n#0V%T\n", "Cat"},
		{"uuencode before begin is ignored", "x-uuencode", "junk\n#0V%T\nbegin 644 a\n#0V%T\nend\n#0V%T\n", "Cat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := io.ReadAll(transferDecoder(tt.encoding, strings.NewReader(tt.in)))
			if err != nil || string(got) != tt.want {
				t.Errorf("decoded %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestUuencodedFilesInText(t *testing.T) {
	text := "See the file:\nbegin 644 cat.txt\n#0V%T\n`\nend\nbye\nbegin 644 not-a-block\nno end line\n"
	w := &walker{}
	kept, files := w.uuencodedFiles([]byte(text))
	if string(kept) != "See the file:\nbye\nbegin 644 not-a-block\nno end line\n" {
		t.Errorf("text kept %q", kept)
	}
	if len(files) != 1 || files[0].Name != "cat.txt" || files[0].Size != 3 {
		t.Fatalf("files %+v", files)
	}
	r, _ := files[0].Open()
	data, _ := io.ReadAll(r)
	if string(data) != "Cat" {
		t.Errorf("file holds %q", data)
	}
}

// TestUuencodedFileAtTextStart checks a block on the text's first line and
// text where "begin " appears only inside lines.
func TestUuencodedFileAtTextStart(t *testing.T) {
	w := &walker{}
	kept, files := w.uuencodedFiles([]byte("begin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\nbye\r\n"))
	if string(kept) != "bye\r\n" || len(files) != 1 || files[0].Name != "cat.txt" {
		t.Errorf("kept %q, files %+v", kept, files)
	}
	text := "Please begin 644 a.txt\nnot a block begin 644 b\n`\nend\n"
	if kept, files := w.uuencodedFiles([]byte(text)); string(kept) != text || files != nil {
		t.Errorf("kept %q, files %+v", kept, files)
	}
}
