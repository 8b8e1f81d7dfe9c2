package convert

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"testing"
)

// scanMessage builds a printer-style scan: a short text body and one PDF of
// size bytes, base64 in 76-column lines.
func scanMessage(size int) (raw, pdf []byte) {
	pdf = make([]byte, size)
	rand.Read(pdf)
	var b bytes.Buffer
	b.WriteString("From: scanner@contoso.com\r\nTo: a@contoso.com\r\nSubject: Scan\r\n" +
		"Content-Type: multipart/mixed; boundary=scan\r\n\r\n--scan\r\nContent-Type: text/plain\r\n\r\nScanned.\r\n--scan\r\n" +
		"Content-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(pdf)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--scan--\r\n")
	return b.Bytes(), pdf
}

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestConvertStreamsAttachments checks that neither Convert nor reading an
// attachment holds the attachment in memory.
func TestConvertStreamsAttachments(t *testing.T) {
	raw, pdf := scanMessage(8 << 20)
	const limit = 1 << 20
	var res *Result
	if n := allocated(func() {
		var err error
		if res, err = Convert(bytes.NewReader(raw), int64(len(raw)), testEnvelope, Options{}); err != nil {
			t.Fatal(err)
		}
	}); n > limit {
		t.Errorf("Convert of a %d-byte message allocated %d bytes", len(raw), n)
	}
	if len(res.Attachments) != 1 || res.Attachments[0].Size != int64(len(pdf)) {
		t.Fatalf("attachments %+v", res.Attachments)
	}
	hash := sha256.New()
	if n := allocated(func() {
		r, err := res.Attachments[0].Open()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := io.Copy(hash, r); err != nil {
			t.Fatal(err)
		}
	}); n > limit {
		t.Errorf("reading a %d-byte attachment allocated %d bytes", len(pdf), n)
	}
	if want := sha256.Sum256(pdf); !bytes.Equal(hash.Sum(nil), want[:]) {
		t.Error("the attachment read back differs from the one sent")
	}
}

// BenchmarkConvertLarge converts a message of about 50 MB: the bytes
// allocated per operation stay far below the message size.
func BenchmarkConvertLarge(b *testing.B) {
	raw, _ := scanMessage(37 << 20)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Convert(bytes.NewReader(raw), int64(len(raw)), testEnvelope, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenLargeAttachment streams the attachment of a message of about
// 50 MB, as the upload to Graph does.
func BenchmarkOpenLargeAttachment(b *testing.B) {
	raw, _ := scanMessage(37 << 20)
	res, err := Convert(bytes.NewReader(raw), int64(len(raw)), testEnvelope, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(res.Attachments[0].Size)
	b.ReportAllocs()
	for b.Loop() {
		r, err := res.Attachments[0].Open()
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, r)
		r.Close()
	}
}

// manyParts builds a message of n parts after a short text body: tiny
// base64 attachments, or text parts that join the body.
func manyParts(n int, text bool) []byte {
	var b bytes.Buffer
	b.WriteString("From: app@contoso.com\r\nTo: a@contoso.com\r\nSubject: Parts\r\n" +
		"Content-Type: multipart/mixed; boundary=\"=_parts\"\r\n\r\n--=_parts\r\nContent-Type: text/plain\r\n\r\nReport.\r\n")
	for i := range n {
		if text {
			fmt.Fprintf(&b, "--=_parts\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nLine %d of the report.\r\n", i)
		} else {
			fmt.Fprintf(&b, "--=_parts\r\nContent-Type: application/octet-stream; name=\"f%d.bin\"\r\n"+
				"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n", i)
		}
	}
	b.WriteString("--=_parts--\r\n")
	return b.Bytes()
}

// BenchmarkParts converts messages of 100, 1,000 and 10,000 parts and
// reads every attachment once, as sending does: the time per part stays
// flat as the count grows. cpu-ns/part is the process's CPU time per part,
// for machines where other work makes elapsed time meaningless.
func BenchmarkParts(b *testing.B) {
	for _, kind := range []string{"attachments", "text"} {
		for _, n := range []int{100, 1000, 10000} {
			raw := manyParts(n, kind == "text")
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				b.ReportAllocs()
				cpuBefore, measured := processCPUTime()
				for b.Loop() {
					res, err := Convert(bytes.NewReader(raw), int64(len(raw)), testEnvelope, Options{})
					if err != nil {
						b.Fatal(err)
					}
					for _, a := range res.Attachments {
						r, _ := a.Open()
						io.Copy(io.Discard, r)
						r.Close()
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/part")
				if cpuAfter, _ := processCPUTime(); measured {
					// With the garbage collector's work, on every core.
					b.ReportMetric(float64((cpuAfter-cpuBefore).Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/part")
				}
			})
		}
	}
}

// BenchmarkSmallText converts a 10 KB plain-text message, as a script or
// an application sends one, and writes its sendMail request the way the
// Graph sender does: counted first, then written.
func BenchmarkSmallText(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("From: app@contoso.com\r\nTo: a@contoso.com\r\nSubject: Report\r\nMessage-ID: <1@app>\r\n\r\n")
	for msg.Len() < 10<<10 {
		msg.WriteString("Line of a report, with \"quotes\", <angles> & a tab\there.\r\n")
	}
	raw := msg.Bytes()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := Convert(bytes.NewReader(raw), int64(len(raw)), testEnvelope, Options{})
		if err != nil {
			b.Fatal(err)
		}
		size := res.SendMailRequestSize(false)
		if err := res.WriteSendMailRequest(io.Discard, false); err != nil || size == 0 {
			b.Fatal(err)
		}
	}
}
