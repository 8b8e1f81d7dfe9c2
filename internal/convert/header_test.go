package convert

import (
	"bufio"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

var testEnvelope = &envelope.Envelope{Mailbox: "scanner@contoso.com", AllowedSenders: []string{"*@contoso.com"},
	Recipients: []string{"a@contoso.com", "b@contoso.com"}}

func TestLenientHeader(t *testing.T) {
	tests := []struct {
		name, raw, subject, body string
	}{
		{"mbox From line skipped", "From nobody Mon Nov 23 08:00:00 2026\nSubject: s\nTo: a@contoso.com\n\nbody\n", "s", "body\r\n"},
		{"missing blank line: body starts at the first non-header line", "Subject: disk full\nTo: a@contoso.com\n/var is 99% full\nsecond line\n", "disk full", "/var is 99% full\r\nsecond line\r\n"},
		{"header only", "Subject: only\nTo: a@contoso.com", "only", ""},
		{"space before the colon", "Subject : spaced\nTo: a@contoso.com\n\nx", "spaced", "x"},
		{"leading blank line: no header", "\nhello\n", "", "hello\r\n"},
		{"leading line of spaces skipped", "   \nSubject: s\nTo: a@contoso.com\n\nbody", "s", "body"},
		{"leading lines of white space skipped", " \t\n\t\nSubject: s\n\nbody", "s", "body"},
		{"UTF-8 byte-order mark skipped", "\uFEFFSubject: s\nTo: a@contoso.com\n\nbody", "s", "body"},
		{"byte-order mark before an mbox line", "\uFEFFFrom nobody Mon Nov 23 08:00:00 2026\nSubject: s\n\nbody", "s", "body"},
		{"space before the first field", " Subject: s\nTo: a@contoso.com\n\nbody", "s", "body"},
		{"tab before the first field, folded value", "\tSubject: s\n  continued\n\nbody", "s continued", "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convertString(t, tt.raw, testEnvelope)
			if res.Message.Subject != tt.subject || res.Message.Body.Content != tt.body {
				t.Errorf("subject %q body %q, want %q and %q", res.Message.Subject, res.Message.Body.Content, tt.subject, tt.body)
			}
		})
	}
}

func TestNotAMessage(t *testing.T) {
	for _, raw := range []string{"", "hello world\n", "\x00\x01\x02 garbage", "  \n hello world\n", "PK\x03\x04\x14\x00\x06\x00"} {
		_, err := Convert(bytesOpener([]byte(raw)), testEnvelope)
		var malformed *MalformedError
		if !errors.As(err, &malformed) {
			t.Errorf("%q: error %v, want a MalformedError", raw, err)
			continue
		}
		if strings.ContainsAny(err.Error(), "\r\n") || err.Error() == "" {
			t.Errorf("%q: reason %q is not one line", raw, err)
		}
	}
}

func TestEightBitHeaders(t *testing.T) {
	raw := "From: J\xfcrgen M\xfcller <j@contoso.com>\nTo: a@contoso.com\nSubject: Caf\xe9 \xe0 emporter\nX-Site: K\xf6ln\n\nx"
	m := convertString(t, raw, testEnvelope).Message
	if m.Subject != "Café à emporter" {
		t.Errorf("subject %q", m.Subject)
	}
	if m.From.EmailAddress.Name != "Jürgen Müller" {
		t.Errorf("from name %q", m.From.EmailAddress.Name)
	}
	if len(m.InternetMessageHeaders) != 1 || m.InternetMessageHeaders[0].Value != "Köln" {
		t.Errorf("x-headers %+v", m.InternetMessageHeaders)
	}
	jis := "To: a@contoso.com\nSubject: \x1b$B8+@Q=q\x1b(B\n\nx"
	if got := convertString(t, jis, testEnvelope).Message.Subject; got != "見積書" {
		t.Errorf("unencoded ISO-2022-JP subject %q", got)
	}
}

func TestEncodedWords(t *testing.T) {
	tests := []struct {
		name, subject, want string
	}{
		{"8-bit byte in a Q word (Eudora)", "=?iso-8859-1?Q?Fr\xf6sche?= im Teich", "Frösche im Teich"},
		{"8-bit UTF-8 in a Q word", "=?utf-8?Q?Fr\xc3\xb6sche?=", "Frösche"},
		{"UTF-7 Q word (Outlook 2000)", "=?utf-7?Q?Fr+APY-sche?=", "Frösche"},
		{"UTF-7 B word", "=?UTF-7?B?RnIrQVBZLXNjaGU=?=", "Frösche"},
		{"unknown charset, ASCII", "=?NONE?B?VEVTVA==?=", "TEST"},
		{"unknown charset, UTF-8 bytes", "=?x-unknown?Q?Caf=C3=A9?=", "Café"},
		{"unknown charset, Latin-1 bytes", "=?x-unknown?Q?Caf=E9?=", "Café"},
		{"word that says UTF-8 holds Latin-1", "=?utf-8?Q?Caf=E9?=", "Café"},
		{"raw UTF-8 with one invalid byte", "Привет\xff мир", "Привет\uFFFD мир"},
		{"white space between words dropped", "=?utf-8?Q?a?= =?iso-8859-1?Q?b?=\r\n =?utf-8?B?Yw==?= d", "abc d"},
		{"text between words kept", "Re: =?utf-8?Q?caf=C3=A9?= and =?utf-8?Q?th=C3=A9?=", "Re: café and thé"},
		{"UTF-8 character split between words", "=?utf-8?B?5pel5g==?= =?utf-8?B?nKzoqp4=?=", "日本語"},
		{"Shift_JIS character split between words", "=?shift_jis?B?jKmQ?= =?shift_jis?B?z4+R?=", "見積書"},
		{"base64 without padding", "=?utf-8?B?w6lsw6h2ZQ?=", "élève"},
		{"stray equals sign in a Q word", "=?utf-8?Q?5=_off?=", "5= off"},
		{"language suffix", "=?utf-8*fr?Q?=C3=A9t=C3=A9?=", "été"},
		{"UTF-8 labelled Latin-1", "=?ISO-8859-1?Q?Best=C3=A4tigung?=", "Bestätigung"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := convertString(t, "To: a@contoso.com\nSubject: "+tt.subject+"\n\nx", testEnvelope).Message
			if m.Subject != tt.want {
				t.Errorf("subject %q, want %q", m.Subject, tt.want)
			}
		})
	}
}

func TestDisplayNames(t *testing.T) {
	tests := []struct {
		name, from, want string
	}{
		{"encoded word in a quoted name (Thunderbird)", `"=?ISO-8859-1?Q?Fran=E7ois?=" <f@contoso.com>`, "François"},
		{"UTF-7 word", `=?utf-7?Q?Fr+APY-sche?= <f@contoso.com>`, "Frösche"},
		{"unknown charset", `=?NONE?B?VEVTVA==?= <f@contoso.com>`, "TEST"},
		{"8-bit byte in a Q word", "=?iso-8859-1?Q?J\xfcrgen?= <f@contoso.com>", "Jürgen"},
		{"raw UTF-8 with one invalid byte", "\xd0\x94\xd0\xbc\xd0\xb8\xd1\x82\xd1\x80\xd0\xb8\xd0\xb9\xff <f@contoso.com>", "Дмитрий\uFFFD"},
		{"raw Latin-1", "Fran\xe7ois <f@contoso.com>", "François"},
		{"Shift_JIS character split between words", "=?shift_jis?B?jKmQ?=\n =?shift_jis?B?z4+R?= <f@contoso.com>", "見積書"},
		{"UTF-8 labelled Latin-1", "=?ISO-8859-1?Q?Best=C3=A4tigung?= <f@contoso.com>", "Bestätigung"},
		{"words and quoted text", `"Dr." =?utf-8?Q?J=C3=BCrgen?= "(IT)" <f@contoso.com>`, "Dr. Jürgen (IT)"},
		{"quote, tab and parenthesis in a Q word", "=?utf-8?Q?a\"b\tc(?= <f@contoso.com>", "a\"b\tc("},
		{"encoded word in a comment name", "f@contoso.com (=?utf-8?Q?J=C3=BCrgen?=)", "Jürgen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := convertString(t, "From: "+tt.from+"\nTo: a@contoso.com\n\nx", testEnvelope).Message
			if got := m.From.EmailAddress; got.Name != tt.want || got.Address != "f@contoso.com" {
				t.Errorf("from %+v, want %q <f@contoso.com>", got, tt.want)
			}
		})
	}
}

// TestAddressRecovery parses address headers that net/mail refuses; every
// address in them must be kept.
func TestAddressRecovery(t *testing.T) {
	tests := []struct {
		header string
		want   []EmailAddress
	}{
		{`pete(his account)@silly.test`, []EmailAddress{{"", "pete@silly.test"}}},
		{`Pete(A nice \) chap) <pete(his account)@silly.test(his host)>`, []EmailAddress{{"Pete", "pete@silly.test"}}},
		{`pete(his account)@silly.test (Pete)`, []EmailAddress{{"Pete", "pete@silly.test"}}},
		{`John <john @ example.com>, "A @ B" <a@contoso.com>`, []EmailAddress{{"John", "john@example.com"}, {"A @ B", "a@contoso.com"}}},
		{`pete(unclosed@silly.test`, []EmailAddress{{"", "unclosed@silly.test"}}},
		{`<@relay.example:jdoe@test.example>`, []EmailAddress{{"", "jdoe@test.example"}}},
		{`John <@r1.example,@r2.example:jdoe@test.example>, b@contoso.com`, []EmailAddress{{"John", "jdoe@test.example"}, {"", "b@contoso.com"}}},
		{`root@localhost, <broken@@x>, admin@intranet ops@intranet`, []EmailAddress{{"", "root@localhost"}, {"", "admin@intranet"}, {"", "ops@intranet"}}},
		{`"Smith, J" <j@contoso.com>; "unclosed <k@host>`, []EmailAddress{{"Smith, J", "j@contoso.com"}, {"", "k@host"}}},
		// Every encoded word of a name decodes alike, whatever the text of an earlier one.
		{`=?utf-8?Q?a(?= <a@contoso.com>, =?ISO-8859-1?Q?Best=C3=A4tigung?= <b@contoso.com>`, []EmailAddress{{"a(", "a@contoso.com"}, {"Bestätigung", "b@contoso.com"}}},
	}
	for _, tt := range tests {
		h, _, err := readHeader(bufio.NewReader(strings.NewReader("To: " + tt.header + "\r\n\r\n")))
		if err != nil {
			t.Fatal(err)
		}
		var got []EmailAddress
		for _, a := range addressList(mailHeader(h), "To") {
			got = append(got, EmailAddress{a.Name, a.Address})
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.header, got, tt.want)
		}
	}
}

func TestAddressListFallback(t *testing.T) {
	tests := []struct {
		header string
		want   []EmailAddress
	}{
		{`"Smith, John" <a@contoso.com>, b@contoso.com`, []EmailAddress{{"Smith, John", "a@contoso.com"}, {"", "b@contoso.com"}}},
		{`Team: "A" <a@contoso.com>, b@contoso.com;`, []EmailAddress{{"A", "a@contoso.com"}, {"", "b@contoso.com"}}},
		{`undisclosed-recipients:;`, nil},
		// The list does not parse: good entries keep their names.
		{`Alice <a@contoso.com>, <broken@@x>, "Unclosed <b@contoso.com>`, []EmailAddress{{"Alice", "a@contoso.com"}, {"", "b@contoso.com"}}},
		{`a@contoso.com b@contoso.com`, []EmailAddress{{"", "a@contoso.com"}, {"", "b@contoso.com"}}},
		{`=?utf-8?Q?Ren=C3=A9e?= <a@contoso.com>; b@contoso.com`, []EmailAddress{{"Renée", "a@contoso.com"}, {"", "b@contoso.com"}}},
	}
	for _, tt := range tests {
		m := convertString(t, "To: "+tt.header+"\n\nx", testEnvelope).Message
		var got []EmailAddress
		for _, r := range m.ToRecipients {
			got = append(got, r.EmailAddress)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: to %+v, want %+v", tt.header, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: to %+v, want %+v", tt.header, got, tt.want)
				break
			}
		}
	}
}

func TestParseParams(t *testing.T) {
	tests := []struct {
		value, wantValue string
		want             map[string]string
	}{
		{`multipart/mixed; boundary="----=_NextPart_000_0001"`, "multipart/mixed", map[string]string{"boundary": "----=_NextPart_000_0001"}},
		{`Multipart/Mixed; BOUNDARY=abc; charset`, "multipart/mixed", map[string]string{"boundary": "abc"}},
		{`text/plain; charset=utf-8; charset=iso-8859-1`, "text/plain", map[string]string{"charset": "utf-8"}},
		{`attachment; filename=Re` + "\xe7" + `u.pdf; size=12`, "attachment", map[string]string{"filename": "Re\xe7u.pdf", "size": "12"}},
		{`attachment; filename="a \"quoted\"; name.pdf"`, "attachment", map[string]string{"filename": `a "quoted"; name.pdf`}},
		{`attachment; filename*=iso-8859-1'fr'Re%E7u%20ao%FBt.pdf`, "attachment", map[string]string{"filename": "Reçu août.pdf"}},
		{`attachment; filename*0*=shift_jis''%8C%A9%90%CF; filename*1*=%8F%91.pdf`, "attachment", map[string]string{"filename": "見積書.pdf"}},
		{`attachment; filename*1="part two.pdf"; filename*0="part one "`, "attachment", map[string]string{"filename": "part one part two.pdf"}},
		{`attachment; filename="plain.pdf"; filename*=utf-8''b%C3%A9l.pdf`, "attachment", map[string]string{"filename": "bél.pdf"}},
		{`attachment; filename*=x-unknown''caf%C3%A9.pdf`, "attachment", map[string]string{"filename": "café.pdf"}},
		{`application/pdf; name==?utf-8?B?w6kucGRm?=`, "application/pdf", map[string]string{"name": "=?utf-8?B?w6kucGRm?="}},
		{``, "", map[string]string{}},
	}
	for _, tt := range tests {
		value, params := parseParams(tt.value)
		if value != tt.wantValue || len(params) != len(tt.want) {
			t.Errorf("%s: %q %q, want %q %q", tt.value, value, params, tt.wantValue, tt.want)
			continue
		}
		for k, v := range tt.want {
			if params[k] != v {
				t.Errorf("%s: %s = %q, want %q", tt.value, k, params[k], v)
			}
		}
	}
}

func TestAttachmentNames(t *testing.T) {
	tests := []struct {
		name, headers, want string
	}{
		{"RFC 2047 in name", "Content-Type: application/pdf; name=\"=?iso-8859-1?Q?Re=E7u.pdf?=\"\n", "Reçu.pdf"},
		{"unquoted encoded word", "Content-Type: application/pdf; name==?utf-8?B?w6kucGRm?=\n", "é.pdf"},
		{"disposition wins over name", "Content-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment; filename=b.pdf\n", "b.pdf"},
		{"RFC 2231 continuation in latin1", "Content-Type: application/pdf\nContent-Disposition: attachment;\n filename*0*=iso-8859-1''Pr%E9sentation%20;\n filename*1*=finale.pdf\n", "Présentation finale.pdf"},
		{"raw 8-bit", "Content-Type: application/pdf\nContent-Disposition: attachment; filename=\"Gr\xf6\xdfe.pdf\"\n", "Größe.pdf"},
		{"path stripped", "Content-Type: application/pdf; name=\"C:\\\\scans\\\\x.pdf\"\n", "C__scans_x.pdf"},
		{"no name: numbered with the type's extension", "Content-Type: image/jpeg\n", "attachment-1.jpg"},
		{"unknown type", "Content-Type: application/x-weird\n", "attachment-1.bin"},
		{"calendar", "Content-Type: text/calendar; method=REQUEST\nContent-Disposition: attachment\n", "invite.ics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "To: a@contoso.com\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\n" + tt.headers + "\nDATA\n--b--\n"
			res := convertString(t, raw, testEnvelope)
			if len(res.Attachments) != 1 || res.Attachments[0].Name != tt.want {
				var names []string
				for _, a := range res.Attachments {
					names = append(names, a.Name)
				}
				t.Errorf("attachments %q, want [%q]", names, tt.want)
			}
		})
	}
}

func TestContentLocationRewrite(t *testing.T) {
	raw := `To: a@contoso.com
Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html

<img src="http://x/logo.png"><img src='logo2.png'><a href="http://x/unused.png">
--r
Content-Type: image/png
Content-Location: http://x/logo.png

PNG1
--r
Content-Type: image/png
Content-Location: logo2.png

PNG2
--r
Content-Type: image/png
Content-Location: http://x/other.png

PNG3
--r
Content-Type: image/png
Content-ID: <logo3@x>

PNG4
--r--
`
	res := convertString(t, raw, testEnvelope)
	want := `<img src="cid:part1@smtpgw"><img src='cid:part2@smtpgw'><a href="http://x/unused.png">`
	if res.Message.Body.ContentType != "html" || res.Message.Body.Content != want {
		t.Errorf("body %q, want %q", res.Message.Body.Content, want)
	}
	wantParts := []struct {
		id     string
		inline bool
	}{{"part1@smtpgw", true}, {"part2@smtpgw", true}, {"", false}, {"logo3@x", false}}
	if len(res.Attachments) != len(wantParts) {
		t.Fatalf("%d attachments", len(res.Attachments))
	}
	for i, w := range wantParts {
		if a := res.Attachments[i]; a.ContentID != w.id || a.IsInline != w.inline {
			t.Errorf("attachment %d: contentId %q inline %v, want %q %v", i, a.ContentID, a.IsInline, w.id, w.inline)
		}
	}
}

func TestMessageID(t *testing.T) {
	tests := map[string]string{
		"Message-ID: <abc.123@host.example>\n": "<abc.123@host.example>",
		"Message-ID:  <abc@host> (comment)\n":  "<abc@host>",
		"Message-ID: abc@host\n":               "",
		"Message-ID: <a b@host>\n":             "",
		"":                                     "",
	}
	for header, want := range tests {
		if got := convertString(t, header+"To: a@contoso.com\n\nx", testEnvelope).Message.InternetMessageID; got != want {
			t.Errorf("%q: internetMessageId %q, want %q", header, got, want)
		}
	}
}
