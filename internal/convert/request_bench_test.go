package convert

import (
	"fmt"
	"io"
	"testing"
)

// BenchmarkRequestBuilder measures streaming and sizing the sendMail
// request of a message with 100, 1,000 and 10,000 small attachments: the
// cost per part must stay flat as parts grow (linear in all).
func BenchmarkRequestBuilder(b *testing.B) {
	content := []byte("%PDF-1.4 a small attachment of a hundred bytes or so, as printers and scripts attach them.\n")
	for _, parts := range []int{100, 1_000, 10_000} {
		res := &Result{Message: Message{
			Subject: "report", Body: ItemBody{ContentType: "html", Content: "<p>See the attached files.</p>"},
			ToRecipients: []Recipient{{EmailAddress: EmailAddress{Name: "Alice", Address: "alice@contoso.com"}}},
		}}
		for i := range parts {
			res.Attachments = append(res.Attachments, Attachment{
				Name: fmt.Sprintf("file-%d.pdf", i), ContentType: "application/pdf",
				Size: int64(len(content)), Open: bytesOpener(content),
			})
		}
		b.Run(fmt.Sprintf("parts=%d", parts), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res.EstimatedRequestSize()
				if err := res.WriteSendMailRequest(io.Discard, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*parts), "ns/part")
		})
	}
}
