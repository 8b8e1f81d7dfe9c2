package e2e

import (
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// TestLongLine sends a whole 1 MB HTML document on one line, as legacy
// applications do, over DATA with and without STARTTLS: it reaches Graph
// intact.
func TestLongLine(t *testing.T) {
	fake := graphtest.New(t)
	g := startWithGraph(t, fake)
	html := "<html><body>" + strings.Repeat("<p>scan &amp; print</p>", 1<<20/24) + "</body></html>"
	body := "From: scanner@contoso.com\nTo: alice@contoso.com\nSubject: report\nContent-Type: text/html; charset=utf-8\n\n" + html + "\n"
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: body})
	mustSubmit(t, g.Addr[1], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: body, StartTLS: true})
	for _, sent := range fake.WaitSent(t, 2, deliveryTimeout) {
		got := strings.TrimRight(sent.Message.Body.Content, "\r\n")
		if sent.Message.Body.ContentType != "html" || got != html {
			t.Errorf("%s body: %d bytes of %s arrived, want the %d-byte line intact", sent.Kind, len(got), sent.Message.Body.ContentType, len(html))
		}
	}
}
