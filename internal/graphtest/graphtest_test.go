package graphtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
)

// do sends one request to the fake and returns the status, headers and body.
func do(t *testing.T, s *Server, method, path, token string, header map[string]string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	target := path
	if !strings.HasPrefix(path, "https://") {
		target = s.URL + path
	}
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

func tokenRequest(t *testing.T, s *Server, form url.Values) (int, map[string]any) {
	t.Helper()
	status, _, body := do(t, s, http.MethodPost, "/"+s.TenantID+"/oauth2/v2.0/token", "",
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(form.Encode()))
	var answer map[string]any
	if err := json.Unmarshal(body, &answer); err != nil {
		t.Fatalf("token answer %q: %v", body, err)
	}
	return status, answer
}

func secretForm(s *Server) url.Values {
	return url.Values{
		"grant_type": {"client_credentials"}, "client_id": {s.ClientID}, "client_secret": {s.ClientSecret},
		"scope": {"https://graph.microsoft.com/.default openid profile offline_access"},
	}
}

// token gets an access token with the client secret.
func token(t *testing.T, s *Server) string {
	t.Helper()
	status, answer := tokenRequest(t, s, secretForm(s))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, answer)
	}
	return answer["access_token"].(string)
}

func jwtClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("access token %q is not a JWT", jwt)
	}
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestOpenIDConfiguration(t *testing.T) {
	s := New(t)
	status, _, body := do(t, s, http.MethodGet, "/"+s.TenantID+"/v2.0/.well-known/openid-configuration", "", nil, nil)
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); status != http.StatusOK || err != nil {
		t.Fatalf("%d %s", status, body)
	}
	for _, key := range []string{"token_endpoint", "authorization_endpoint", "issuer"} {
		if v, _ := doc[key].(string); !strings.HasPrefix(v, s.URL+"/"+s.TenantID+"/") {
			t.Errorf("%s = %q, want under %s", key, v, s.URL)
		}
	}
}

func TestToken(t *testing.T) {
	s := New(t)
	status, answer := tokenRequest(t, s, secretForm(s))
	if status != http.StatusOK || answer["token_type"] != "Bearer" || answer["expires_in"] != 3600.0 {
		t.Fatalf("token: %d %v", status, answer)
	}
	claims := jwtClaims(t, answer["access_token"].(string))
	if claims["tid"] != s.TenantID || claims["appid"] != s.ClientID || claims["azp"] != s.ClientID ||
		claims["aud"] != "https://graph.microsoft.com" || fmt.Sprint(claims["roles"]) != "[Mail.Send Mail.ReadWrite]" {
		t.Errorf("claims %v", claims)
	}
	if exp, _ := claims["exp"].(float64); int64(exp) <= time.Now().Unix()+3000 {
		t.Errorf("exp %v is too soon", claims["exp"])
	}

	roles := New(t, WithRoles("Mail.Send"))
	if got := fmt.Sprint(jwtClaims(t, token(t, roles))["roles"]); got != "[Mail.Send]" {
		t.Errorf("WithRoles: roles %s", got)
	}

	tests := []struct {
		name   string
		change func(url.Values)
		status int
		code   string
		aadsts float64
	}{
		{"wrong secret", func(f url.Values) { f.Set("client_secret", "wrong") }, 401, "invalid_client", 7000215},
		{"no credential", func(f url.Values) { f.Del("client_secret") }, 401, "invalid_client", 700027},
		{"unknown client", func(f url.Values) { f.Set("client_id", newGUID()) }, 400, "unauthorized_client", 700016},
		{"scope without /.default", func(f url.Values) { f.Set("scope", "Mail.Send") }, 400, "invalid_scope", 1002012},
		{"other grant", func(f url.Values) { f.Set("grant_type", "password") }, 400, "unsupported_grant_type", 70003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := secretForm(s)
			tt.change(form)
			status, answer := tokenRequest(t, s, form)
			codes, _ := answer["error_codes"].([]any)
			if status != tt.status || answer["error"] != tt.code || len(codes) != 1 || codes[0] != tt.aadsts ||
				!strings.HasPrefix(answer["error_description"].(string), fmt.Sprintf("AADSTS%d: ", int(tt.aadsts))) {
				t.Errorf("got %d %v, want %d %s %d", status, answer, tt.status, tt.code, int(tt.aadsts))
			}
		})
	}
	if n := s.TokenRequests(); n != 1+len(tests) {
		t.Errorf("TokenRequests = %d, want %d", n, 1+len(tests))
	}
}

// assertion signs a client assertion as MSAL does (PS256, x5t#S256).
func assertion(t *testing.T, certAndKey []byte, clientID string, header map[string]string) string {
	t.Helper()
	var cert *x509.Certificate
	var key *rsa.PrivateKey
	for rest := certAndKey; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var err error
		switch block.Type {
		case "CERTIFICATE":
			cert, err = x509.ParseCertificate(block.Bytes)
		case "PRIVATE KEY":
			var k any
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
			key, _ = k.(*rsa.PrivateKey)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if cert == nil || key == nil {
		t.Fatal("NewCertificate: PEM without a certificate and an RSA key")
	}
	thumbprint := sha256.Sum256(cert.Raw)
	h := map[string]string{"alg": "PS256", "typ": "JWT", "x5t#S256": base64.StdEncoding.EncodeToString(thumbprint[:])}
	for k, v := range header {
		h[k] = v
	}
	enc := base64.RawURLEncoding
	headerJSON, _ := json.Marshal(h)
	claimsJSON, _ := json.Marshal(map[string]any{"sub": clientID, "iss": clientID, "exp": time.Now().Add(10 * time.Minute).Unix()})
	signed := enc.EncodeToString(headerJSON) + "." + enc.EncodeToString(claimsJSON)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + enc.EncodeToString(sig)
}

func TestCertificateAssertion(t *testing.T) {
	cert, certAndKey := NewCertificate(t)
	_, otherCertAndKey := NewCertificate(t)
	s := New(t, WithCertificate(cert))
	withoutCert := New(t)
	tests := []struct {
		name      string
		server    *Server
		assertion string
		status    int
	}{
		{"signed by the certificate", s, assertion(t, certAndKey, s.ClientID, nil), 200},
		{"signed by another key", s, assertion(t, otherCertAndKey, s.ClientID, map[string]string{"x5t#S256": ""}), 401},
		{"thumbprint of another certificate", s, assertion(t, otherCertAndKey, s.ClientID, nil), 401},
		{"another client", s, assertion(t, certAndKey, newGUID(), nil), 401},
		{"not a JWT", s, "not-a-jwt", 401},
		{"no certificate registered", withoutCert, assertion(t, certAndKey, withoutCert.ClientID, nil), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := secretForm(tt.server)
			form.Del("client_secret")
			form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			form.Set("client_assertion", tt.assertion)
			if status, answer := tokenRequest(t, tt.server, form); status != tt.status {
				t.Errorf("got %d %v, want %d", status, answer, tt.status)
			}
		})
	}
}

func sendMailJSON(t *testing.T, saveToSentItems bool) []byte {
	t.Helper()
	body, err := json.Marshal(convert.SendMailRequest{
		Message: convert.Message{
			Subject:      "Scan",
			Body:         convert.ItemBody{ContentType: "text", Content: "hello"},
			ToRecipients: []convert.Recipient{{EmailAddress: convert.EmailAddress{Address: "a@example.com"}}},
			Attachments: []convert.FileAttachment{{ODataType: convert.FileAttachmentType, Name: "scan.pdf",
				ContentType: "application/pdf", ContentBytes: []byte("%PDF-1.4")}},
		},
		SaveToSentItems: saveToSentItems,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestSendMail(t *testing.T) {
	s := New(t)
	tok := token(t, s)
	status, header, _ := do(t, s, http.MethodPost, "/v1.0/users/Scanner@example.com/sendMail", tok,
		map[string]string{"Content-Type": "application/json", "client-request-id": "c-1"}, sendMailJSON(t, true))
	if status != http.StatusAccepted || header.Get("request-id") == "" || header.Get("client-request-id") != "c-1" {
		t.Fatalf("sendMail JSON: %d %v", status, header)
	}
	mime := "From: a@example.com\r\nTo: b@example.com\r\nSubject: signed\r\n\r\nbody\r\n"
	status, _, _ = do(t, s, http.MethodPost, "/v1.0/users/scanner@example.com/sendMail", tok,
		map[string]string{"Content-Type": "text/plain"}, []byte(base64.StdEncoding.EncodeToString([]byte(mime))))
	if status != http.StatusAccepted {
		t.Fatalf("sendMail MIME: %d", status)
	}

	sent := s.WaitSent(t, 2, time.Second)
	first := sent[0]
	if first.Mailbox != "Scanner@example.com" || first.Kind != "json" || !first.SaveToSentItems ||
		first.RequestID != header.Get("request-id") || first.Message.Subject != "Scan" ||
		len(first.Message.Attachments) != 1 || string(first.Message.Attachments[0].ContentBytes) != "%PDF-1.4" {
		t.Errorf("JSON sent: %+v", first)
	}
	if sent[1].Kind != "mime" || string(sent[1].MIME) != mime {
		t.Errorf("MIME sent: %+v", sent[1])
	}
	if n := s.Calls(RouteSendMail); n != 2 {
		t.Errorf("Calls(sendMail) = %d, want 2", n)
	}
	if status, _, body := do(t, s, http.MethodGet, "/v1.0/me", tok, nil, nil); status != 404 || graphCode(body) != "UnknownRoute" {
		t.Errorf("unknown route: %d %s", status, body)
	}
}

func TestGraphRefusals(t *testing.T) {
	s := New(t)
	tok := token(t, s)
	withHeaders := func(names ...string) []byte {
		var req convert.SendMailRequest
		json.Unmarshal(sendMailJSON(t, false), &req)
		for _, n := range names {
			req.Message.InternetMessageHeaders = append(req.Message.InternetMessageHeaders, convert.Header{Name: n, Value: "v"})
		}
		body, _ := json.Marshal(req)
		return body
	}
	jsonType := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name   string
		token  string
		header map[string]string
		body   []byte
		status int
		code   string // "" for an HTML body
	}{
		{"no token", "", jsonType, sendMailJSON(t, false), 401, "InvalidAuthenticationToken"},
		{"token not issued here", signJWT(signingKey(), SigningKeyID, map[string]any{"tid": s.TenantID}), jsonType, sendMailJSON(t, false), 401, "InvalidAuthenticationToken"},
		{"gzip body", tok, map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, sendMailJSON(t, false), 400, "ErrorInvalidRequest"},
		{"not JSON", tok, jsonType, []byte("{"), 400, "ErrorInvalidRequest"},
		{"header without x-", tok, jsonType, withHeaders("X-Scanner", "Priority"), 400, "InvalidInternetMessageHeader"},
		{"six x- headers", tok, jsonType, withHeaders("x-1", "x-2", "x-3", "x-4", "x-5", "x-6"), 400, "InvalidInternetMessageHeaderCollection"},
		{"over 4 MB", tok, jsonType, bytes.Repeat([]byte(" "), 4<<20+1), 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, body := do(t, s, http.MethodPost, "/v1.0/users/a@example.com/sendMail", tt.token, tt.header, tt.body)
			if status != tt.status || graphCode(body) != tt.code {
				t.Errorf("got %d %s, want %d %q", status, body, tt.status, tt.code)
			}
			if tt.code == "" && !strings.HasPrefix(header.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type %q, want HTML", header.Get("Content-Type"))
			}
		})
	}
	if len(s.Sent()) != 0 {
		t.Errorf("refused requests were recorded: %+v", s.Sent())
	}
	if n := s.Calls(RouteSendMail); n != len(tests) {
		t.Errorf("Calls(sendMail) = %d, want %d", n, len(tests))
	}
}

// graphCode is the code of a Graph error body, "" when it is not one.
func graphCode(body []byte) string {
	var e struct {
		Error struct {
			Code       string `json:"code"`
			InnerError struct {
				RequestID string `json:"request-id"`
			} `json:"innerError"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.InnerError.RequestID == "" {
		return ""
	}
	return e.Error.Code
}

func TestFailNext(t *testing.T) {
	s := New(t)
	tok := token(t, s)
	s.FailNext(RouteSendMail, 2, Failure{Status: 429, Code: "ApplicationThrottled", RetryAfter: "2"})
	s.FailNext(RouteSendMail, 1, Failure{Status: 503, HTML: true})
	s.FailNext(RouteToken, 1, Failure{Status: 503, RetryAfter: "1"})
	tests := []struct {
		status     int
		code       string
		retryAfter string
	}{
		{429, "ApplicationThrottled", "2"},
		{429, "ApplicationThrottled", "2"},
		{503, "", ""},
		{202, "", ""},
	}
	for i, tt := range tests {
		status, header, body := do(t, s, http.MethodPost, "/v1.0/users/a@example.com/sendMail", tok,
			map[string]string{"Content-Type": "application/json"}, sendMailJSON(t, false))
		if status != tt.status || graphCode(body) != tt.code || header.Get("Retry-After") != tt.retryAfter {
			t.Errorf("request %d: %d %q Retry-After %q, want %d %q %q", i, status, body, header.Get("Retry-After"), tt.status, tt.code, tt.retryAfter)
		}
	}
	if n := s.Calls(RouteSendMail); n != len(tests) {
		t.Errorf("Calls(sendMail) = %d, want %d", n, len(tests))
	}
	if status, answer := tokenRequest(t, s, secretForm(s)); status != 503 || answer["error"] != "temporarily_unavailable" {
		t.Errorf("scripted token failure: %d %v", status, answer)
	}
	token(t, s) // the script is used up
}

func TestDraftWithUploadSession(t *testing.T) {
	s := New(t)
	tok := token(t, s)
	jsonType := map[string]string{"Content-Type": "application/json"}
	msg, _ := json.Marshal(convert.Message{Subject: "Big scan",
		ToRecipients: []convert.Recipient{{EmailAddress: convert.EmailAddress{Address: "a@example.com"}}}})
	status, _, body := do(t, s, http.MethodPost, "/v1.0/users/scanner@example.com/messages", tok, jsonType, msg)
	var draft struct {
		ID      string `json:"id"`
		Subject string `json:"subject"`
	}
	if err := json.Unmarshal(body, &draft); status != 201 || err != nil || draft.ID == "" || draft.Subject != "Big scan" {
		t.Fatalf("create draft: %d %s", status, body)
	}
	messages := "/v1.0/users/scanner@example.com/messages/" + draft.ID

	small, _ := json.Marshal(convert.FileAttachment{ODataType: convert.FileAttachmentType, Name: "logo.png", ContentBytes: []byte("png")})
	if status, _, body := do(t, s, http.MethodPost, messages+"/attachments", tok, jsonType, small); status != 201 {
		t.Fatalf("add attachment: %d %s", status, body)
	}

	const chunk = 320 << 10
	data := make([]byte, 2*chunk+100)
	rand.Read(data)
	session, _ := json.Marshal(map[string]any{"AttachmentItem": map[string]any{"attachmentType": "file",
		"name": "scan.pdf", "size": len(data), "contentType": "application/pdf", "isInline": false}})
	status, _, body = do(t, s, http.MethodPost, messages+"/attachments/createUploadSession", tok, jsonType, session)
	var created struct {
		UploadURL          string   `json:"uploadUrl"`
		NextExpectedRanges []string `json:"nextExpectedRanges"`
	}
	if err := json.Unmarshal(body, &created); status != 201 || err != nil || !strings.HasPrefix(created.UploadURL, s.URL+"/") ||
		fmt.Sprint(created.NextExpectedRanges) != "[0-]" {
		t.Fatalf("create upload session: %d %s", status, body)
	}

	put := func(token string, first, last int) (int, string) {
		header := map[string]string{"Content-Range": fmt.Sprintf("bytes %d-%d/%d", first, last, len(data))}
		status, _, body := do(t, s, http.MethodPut, created.UploadURL, token, header, data[first:last+1])
		return status, string(body)
	}
	next := func() string {
		status, _, body := do(t, s, http.MethodGet, created.UploadURL, "", nil, nil)
		var st struct{ NextExpectedRanges []string }
		if err := json.Unmarshal(body, &st); status != 200 || err != nil {
			t.Fatalf("upload status: %d %s", status, body)
		}
		return fmt.Sprint(st.NextExpectedRanges)
	}
	steps := []struct {
		name          string
		token         string
		first, last   int
		status        int
		nextAfterward string
	}{
		{"with Authorization", tok, 0, chunk - 1, 401, "[0-]"},
		{"not a multiple of 320 KiB", "", 0, chunk, 400, "[0-]"},
		{"first chunk", "", 0, chunk - 1, 200, fmt.Sprintf("[%d-]", chunk)},
		{"first chunk again", "", 0, chunk - 1, 416, fmt.Sprintf("[%d-]", chunk)},
		{"skipping ahead", "", 2 * chunk, len(data) - 1, 416, fmt.Sprintf("[%d-]", chunk)},
		{"rest", "", chunk, len(data) - 1, 201, ""},
	}
	for _, st := range steps {
		if status, body := put(st.token, st.first, st.last); status != st.status {
			t.Fatalf("%s: %d %s, want %d", st.name, status, body, st.status)
		}
		if st.nextAfterward != "" {
			if got := next(); got != st.nextAfterward {
				t.Fatalf("%s: nextExpectedRanges %s, want %s", st.name, got, st.nextAfterward)
			}
		}
	}
	if n := s.Calls(RouteUpload); n != len(steps) {
		t.Errorf("Calls(upload) = %d, want %d", n, len(steps))
	}

	if status, _, body := do(t, s, http.MethodPost, messages+"/send", tok, nil, nil); status != 202 {
		t.Fatalf("send: %d %s", status, body)
	}
	sent := s.WaitSent(t, 1, time.Second)[0]
	atts := sent.Message.Attachments
	if sent.Kind != "draft" || sent.Mailbox != "scanner@example.com" || !sent.SaveToSentItems || len(atts) != 2 ||
		string(atts[0].ContentBytes) != "png" || atts[1].Name != "scan.pdf" || !bytes.Equal(atts[1].ContentBytes, data) {
		t.Errorf("sent draft: kind %s, %d attachments", sent.Kind, len(atts))
	}

	// A draft the client gives up on is deleted.
	_, _, body = do(t, s, http.MethodPost, "/v1.0/users/scanner@example.com/messages", tok, jsonType, msg)
	json.Unmarshal(body, &draft)
	if status, _, body := do(t, s, http.MethodDelete, "/v1.0/users/scanner@example.com/messages/"+draft.ID, tok, nil, nil); status != 204 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if got := s.Deleted(); len(got) != 1 || got[0] != draft.ID {
		t.Errorf("Deleted() = %v, want [%s]", got, draft.ID)
	}
}

var (
	jsonMarshal   = json.Marshal
	jsonUnmarshal = json.Unmarshal
)

// post starts a sendMail request in the background and reports its
// outcome on done.
func post(s *Server, ctx context.Context, mailbox, token string, body []byte, done chan<- error) {
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1.0/users/"+mailbox+"/sendMail", bytes.NewReader(body))
		if err != nil {
			done <- err
			return
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
}

func TestPeakInFlight(t *testing.T) {
	s := New(t)
	tok := token(t, s)
	body := sendMailJSON(t, false)
	mailboxes := []string{"box@example.com", "BOX@example.com", "Box@Example.com"}
	s.FailNext(RouteSendMail, len(mailboxes), Failure{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(mailboxes))
	for _, m := range mailboxes {
		post(s, ctx, m, tok, body, done)
	}
	waitFor(t, func() bool { return s.Calls(RouteSendMail) == len(mailboxes) })
	if got := s.PeakInFlight("box@EXAMPLE.com"); got != len(mailboxes) {
		t.Errorf("PeakInFlight = %d, want %d", got, len(mailboxes))
	}
	cancel()
	for range mailboxes {
		if err := <-done; err == nil {
			t.Error("a hung request was answered")
		}
	}
	if got := s.PeakInFlight("other@example.com"); got != 0 {
		t.Errorf("PeakInFlight(other) = %d, want 0", got)
	}
}

// TestHangReleasedOnCleanup checks that a fake holding requests, hung or
// slowed down, stops when its test ends without waiting for the client.
func TestHangReleasedOnCleanup(t *testing.T) {
	done := make(chan error, 2)
	t.Run("held", func(t *testing.T) {
		s := New(t)
		tok := token(t, s)
		body := sendMailJSON(t, false)
		s.FailNext(RouteSendMail, 1, Failure{Hang: true})
		post(s, context.Background(), "a@example.com", tok, body, done)
		waitFor(t, func() bool { return s.Calls(RouteSendMail) == 1 })
		s.SetLatency(time.Hour)
		post(s, context.Background(), "a@example.com", tok, body, done)
		waitFor(t, func() bool { return s.PeakInFlight("a@example.com") == 2 })
	})
	timeout := time.After(10 * time.Second)
	for range 2 {
		select {
		case <-done:
		case <-timeout:
			t.Fatal("a held request was not released when the fake closed")
		}
	}
}

func TestConfigFiles(t *testing.T) {
	s := New(t)
	g := s.GraphConfig(t)
	secret, err := os.ReadFile(g.ClientSecretFile)
	if err != nil || strings.TrimSpace(string(secret)) != s.ClientSecret {
		t.Errorf("client secret file: %q %v", secret, err)
	}
	if g.TenantID != s.TenantID || g.ClientID != s.ClientID || g.AuthorityHost != s.URL+"/" || g.Endpoint != s.URL {
		t.Errorf("GraphConfig = %+v", g)
	}
	toml := s.GraphTOML(t)
	for _, want := range []string{"[graph]\n", fmt.Sprintf("tenant_id = %q\n", s.TenantID), fmt.Sprintf("endpoint = %q\n", s.URL)} {
		if !strings.Contains(toml, want) {
			t.Errorf("GraphTOML lacks %q:\n%s", want, toml)
		}
	}
	pemData, err := os.ReadFile(s.WriteCAFile(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("CA file: %q", pemData)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: s.CertPool(), DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("CA file does not match CertPool: %v", err)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
	}
}
