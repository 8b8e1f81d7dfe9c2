package convert

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// spoofHeader is what a device on the LAN could send with a valid login:
// two From fields, a foreign Sender and a header Exchange trusts.
const spoofHeader = "From: scanner@contoso.com\n" +
	"From: CEO <ceo@contoso.com>\n" +
	"Sender: ceo@contoso.com\n" +
	"Resent-From: boss@example.org\n" +
	"X-MS-Exchange-Organization-AuthAs: Internal\n" +
	"X-Ms-Has-Attach: yes\n" +
	"X-Mailer: scanner\n" +
	"To: alice@example.com\n"

func spoofEnvelope() *envelope.Envelope {
	return &envelope.Envelope{Mailbox: "scanner@contoso.com", AllowedSenders: []string{"scanner@contoso.com"}, Recipients: []string{"alice@example.com"}}
}

func TestSenderPolicyJSON(t *testing.T) {
	res := convertString(t, spoofHeader+"Subject: plain\n\nbody\n", spoofEnvelope())
	if from := res.Message.From.EmailAddress; from.Address != "scanner@contoso.com" || from.Name != "" {
		t.Errorf("from = %+v, want the mailbox without the second From's name", from)
	}
	for _, h := range res.Message.InternetMessageHeaders {
		if strings.HasPrefix(strings.ToLower(h.Name), "x-ms-") {
			t.Errorf("Exchange header passed on: %+v", h)
		}
	}
	if len(res.Message.InternetMessageHeaders) != 1 || res.Message.InternetMessageHeaders[0].Name != "X-Mailer" {
		t.Errorf("headers %+v, want X-Mailer alone", res.Message.InternetMessageHeaders)
	}
	if !slices.Contains(res.DroppedHeaders, "X-Ms-Exchange-Organization-Authas") {
		t.Errorf("dropped %v", res.DroppedHeaders)
	}
}

func TestSenderPolicySigned(t *testing.T) {
	signed := "MIME-Version: 1.0\n" +
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"sig\"\n\n" +
		"--sig\nContent-Type: text/plain\nX-MS-Exchange-Organization-AuthAs: Internal\n\nsigned text\n--sig\n" +
		"Content-Type: application/pkcs7-signature\n\nAAAA\n--sig--\n"
	res := convertString(t, spoofHeader+signed, spoofEnvelope())
	if res.MIME == nil {
		t.Fatal("a signed message must pass through as MIME")
	}
	r, err := res.MIME()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(out), "\r\n\r\n")
	if n := strings.Count(head, "From: "); n != 1 || !strings.Contains(head, "From: <scanner@contoso.com>") {
		t.Errorf("header has %d From fields:\n%s", n, head)
	}
	for _, gone := range []string{"Sender:", "Resent-From:", "X-MS-", "X-Ms-", "ceo@", "boss@"} {
		if strings.Contains(head, gone) {
			t.Errorf("header still has %q:\n%s", gone, head)
		}
	}
	// The signed body is untouched, X-MS- header inside it included.
	if !strings.HasPrefix(body, "--sig\r\nContent-Type: text/plain\r\nX-MS-Exchange-Organization-AuthAs: Internal\r\n") {
		t.Errorf("signed body changed:\n%s", body)
	}
}

func TestSenderPolicyKeepsAllowedSenders(t *testing.T) {
	env := spoofEnvelope()
	env.AllowedSenders = []string{"*@contoso.com"}
	res := convertString(t, "From: Floor 3 <floor3@contoso.com>\nSender: scanner@contoso.com\nTo: alice@example.com\n\nbody\n", env)
	if from := res.Message.From.EmailAddress; from.Address != "floor3@contoso.com" || from.Name != "Floor 3" {
		t.Errorf("from = %+v", from)
	}
	// A display name that is an address is not kept for the mailbox.
	res = convertString(t, "From: \"ceo@contoso.com\" <x@example.org>\nTo: alice@example.com\n\nbody\n", env)
	if from := res.Message.From.EmailAddress; from.Address != "scanner@contoso.com" || from.Name != "" {
		t.Errorf("from = %+v", from)
	}
}

func TestForeignSenders(t *testing.T) {
	got, err := ForeignSenders(strings.NewReader(strings.ReplaceAll(spoofHeader, "\n", "\r\n")+"\r\nbody\r\n"), []string{"scanner@contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ceo@contoso.com", "ceo@contoso.com", "boss@example.org"}; !slices.Equal(got, want) {
		t.Errorf("ForeignSenders = %q, want %q", got, want)
	}
	got, _ = ForeignSenders(strings.NewReader("From: scanner@contoso.com\r\nFrom: undisclosed\r\n\r\n"), []string{"scanner@contoso.com"})
	if !slices.Equal(got, []string{"undisclosed"}) {
		t.Errorf("a From without an address: %q", got)
	}
	got, _ = ForeignSenders(strings.NewReader("From: Scanner <SCANNER@contoso.com>\r\n\r\n"), []string{"scanner@contoso.com"})
	if len(got) != 0 {
		t.Errorf("allowed sender reported: %q", got)
	}
}
