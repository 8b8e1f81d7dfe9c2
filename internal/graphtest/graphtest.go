// Package graphtest serves a fake Entra ID and a fake Microsoft Graph over
// TLS on loopback, for every test of the project. It records what it is sent
// and can be told to fail, throttle, hang or slow down.
package graphtest

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
)

// Server is a running fake. Its URL serves both Entra ID and Graph.
type Server struct {
	URL            string // https://127.0.0.1:PORT
	TenantID       string
	ClientID       string
	ClientSecret   string
	IdentityHeader string // IDENTITY_HEADER for IdentityEndpoint

	servicePrincipalID string

	ts      *httptest.Server
	opts    options
	issuer  *issuer       // signs service account tokens; nil without WithFederatedCredential
	closing chan struct{} // closed at cleanup: releases hung requests

	mu        sync.Mutex
	tokens    map[string]string // access tokens issued, with their audience
	tokenReqs int
	lifetime  time.Duration // of the tokens issued
	calls     map[string]int
	failures  map[string][]Failure
	latency   time.Duration
	inFlight  map[string]int
	peak      map[string]int
	sent      []Sent
	accepted  int // messages accepted: len(sent), or their count alone with Counting
	drafts    map[string]*draft
	uploads   map[string]*upload
	deleted   []string
}

// Sent is one message Graph accepted for sending.
type Sent struct {
	Mailbox         string
	Kind            string          // "json", "mime" or "draft"
	Message         convert.Message // json and draft: with every attachment's bytes
	MIME            []byte          // mime: the decoded message
	SaveToSentItems bool
	RequestID       string
}

// Failure is a scripted answer; see FailNext.
type Failure struct {
	Status     int
	Code       string // Graph error code
	Message    string
	RetryAfter string // Retry-After header value
	Hang       bool   // never answer: hold the request until the client gives up
	HTML       bool   // an HTML body, as a proxy's 413 has, instead of Graph's JSON
}

// Audience is the resource Graph accepts tokens for: whatever URL the
// client sends requests to, the token is for Microsoft Graph.
const Audience = "https://graph.microsoft.com"

// Routes that FailNext and Calls name.
const (
	RouteToken               = "token"
	RouteSendMail            = "sendMail"
	RouteCreateDraft         = "createDraft"
	RouteAddAttachment       = "addAttachment"
	RouteCreateUploadSession = "createUploadSession"
	RouteUpload              = "upload"
	RouteSend                = "send"
	RouteDeleteMessage       = "deleteMessage"
)

type options struct {
	roles     []string
	cert      *x509.Certificate
	federated []string // subjects of federated identity credentials
	counting  bool     // count messages sent, neither decoding nor keeping them
}

// Option configures a fake.
type Option func(*options)

// WithRoles sets the roles claim of issued tokens (default Mail.Send and
// Mail.ReadWrite).
func WithRoles(roles ...string) Option { return func(o *options) { o.roles = roles } }

// WithCertificate accepts client assertions signed with cert's key.
func WithCertificate(cert *x509.Certificate) Option { return func(o *options) { o.cert = cert } }

// Counting makes the fake a sink for load tests, as Postfix's smtp-sink is
// for SMTP: sendMail still checks the token, counts calls in flight and
// reads the whole request, but neither decodes nor keeps the message, so
// the fake costs the machine little beside the gateway it measures.
// WaitSent then counts the messages and returns none.
func Counting() Option { return func(o *options) { o.counting = true } }

// New starts a fake; t's cleanup stops it.
func New(t testing.TB, opts ...Option) *Server {
	s := &Server{
		TenantID:           newGUID(),
		ClientID:           newGUID(),
		ClientSecret:       "fake-secret-" + randomHex(8),
		IdentityHeader:     "fake-identity-header-" + randomHex(8),
		servicePrincipalID: newGUID(),
		opts:               options{roles: []string{"Mail.Send", "Mail.ReadWrite"}},
		closing:            make(chan struct{}),
		tokens:             map[string]string{},
		lifetime:           tokenLifetime,
		calls:              map[string]int{},
		failures:           map[string][]Failure{},
		inFlight:           map[string]int{},
		peak:               map[string]int{},
		drafts:             map[string]*draft{},
		uploads:            map[string]*upload{},
	}
	for _, o := range opts {
		o(&s.opts)
	}
	// Made now, not at the first token: that may be inside a client's
	// timeout.
	signingKey()
	if len(s.opts.federated) > 0 {
		s.issuer = newIssuer()
	}
	mux := http.NewServeMux()
	s.routeEntra(mux)
	s.routeGraph(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", newGUID())
		graphError(w, http.StatusNotFound, "UnknownRoute", "graphtest has no route for "+r.Method+" "+r.URL.Path)
	})
	s.ts = httptest.NewTLSServer(mux)
	s.URL = s.ts.URL
	t.Cleanup(func() {
		close(s.closing)
		s.ts.Close()
	})
	return s
}

// CertPool trusts the fake's certificate.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.ts.Certificate())
	return pool
}

// Client is an HTTP client that trusts the fake.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// WriteCAFile writes the fake's certificate as PEM into dir, for the
// SSL_CERT_FILE of a gateway running as a separate process.
func (s *Server) WriteCAFile(dir string) string {
	path := filepath.Join(dir, "graphtest-ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ts.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		panic(err)
	}
	return path
}

// GraphConfig is a [graph] section pointing at the fake, loaded through
// the configuration loader, with the client secret in a file under
// t.TempDir() and a 30 s request timeout.
func (s *Server) GraphConfig(t testing.TB) *config.Graph {
	t.Helper()
	return s.GraphConfigWith(t, "")
}

// GraphConfigWith is GraphConfig with more [graph] keys, one "key = value"
// a line.
func (s *Server) GraphConfigWith(t testing.TB, keys string) *config.Graph {
	t.Helper()
	toml := s.GraphTOML(t) + keys + "timeout = \"30s\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[network]]\ncidrs = [\"127.0.0.1\"]\nmailbox = \"scanner@contoso.com\"\n"
	cfg, err := config.Parse([]byte(toml), "graphtest.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Graph
}

// GraphTOML is a [graph] section pointing at the fake, for a configuration
// file, with the client secret in a file under t.TempDir().
func (s *Server) GraphTOML(t testing.TB) string {
	return s.GraphTOMLWithSecretFile(s.WriteSecretFile(t.TempDir()))
}

// WriteSecretFile writes the client secret into dir and returns its path;
// a test may overwrite it with a wrong one and back.
func (s *Server) WriteSecretFile(dir string) string {
	path := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(path, []byte(s.ClientSecret+"\n"), 0o600); err != nil {
		panic(err)
	}
	return path
}

// GraphTOMLWithSecretFile is GraphTOML with the client secret read from path.
func (s *Server) GraphTOMLWithSecretFile(path string) string {
	return fmt.Sprintf("[graph]\ntenant_id = %q\nclient_id = %q\nclient_secret_file = %q\nauthority_host = %q\nendpoint = %q\n",
		s.TenantID, s.ClientID, path, s.URL+"/", s.URL)
}

// FailNext makes the next n requests on route answer f, after any
// failures already scripted for it.
func (s *Server) FailNext(route string, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures[route] = append(s.failures[route], f)
	}
}

// SetLatency makes every Graph request wait d before it is answered.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// Sent returns the messages accepted so far, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// WaitSent waits until at least n messages were accepted and returns them
// (none with Counting); the test fails if that takes longer than timeout.
func (s *Server) WaitSent(t testing.TB, n int, timeout time.Duration) []Sent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		accepted := s.accepted
		s.mu.Unlock()
		if accepted >= n {
			return s.Sent()
		}
		if time.Now().After(deadline) {
			t.Fatalf("graphtest: %d message(s) sent after %s, want %d", accepted, timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SetTokenLifetime makes the tokens issued from now on expire d after
// they are issued (expires_in and the exp claim agree, as Entra ID's do);
// 0 or less issues tokens already expired, as a resource server whose
// clock is ahead would see them. The default is an hour.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// tokenExpiry is when a token issued now expires.
func (s *Server) tokenExpiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Add(s.lifetime)
}

// TokenRequests counts token requests, refused ones included.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenReqs
}

// Calls counts the requests seen on route, failed ones included.
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[route]
}

// PeakInFlight is the most Graph requests for mailbox ever in flight at once.
func (s *Server) PeakInFlight(mailbox string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[strings.ToLower(mailbox)]
}

// Deleted lists the IDs of the messages (drafts) deleted.
func (s *Server) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deleted...)
}

// takeFailure counts a call on route and pops its next scripted failure.
func (s *Server) takeFailure(route string) (Failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[route]++
	queue := s.failures[route]
	if len(queue) == 0 {
		return Failure{}, false
	}
	s.failures[route] = queue[1:]
	return queue[0], true
}

// fail answers f, or holds the request until the client or the fake ends.
// Token requests fail in Entra ID's error shape, the others in Graph's.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, route string, f Failure) {
	if f.Hang {
		s.wait(r, -1)
		return
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	switch {
	case f.HTML:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", f.Status, http.StatusText(f.Status))
	case route == RouteToken:
		code, message := f.Code, f.Message
		if code == "" {
			code = "invalid_request"
			if f.Status >= 500 || f.Status == http.StatusTooManyRequests {
				code = "temporarily_unavailable"
			}
		}
		if message == "" {
			message = http.StatusText(f.Status)
		}
		entraError(w, f.Status, code, 0, message)
	default:
		graphError(w, f.Status, f.Code, f.Message)
	}
}

// wait holds a request for d (forever when d < 0) unless its client gives
// up or the fake is closing, and reports whether d passed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	var elapsed <-chan time.Time
	if d >= 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		elapsed = timer.C
	}
	select {
	case <-elapsed:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

// graphError writes an error in Graph's shape.
func graphError(w http.ResponseWriter, status int, code, message string) {
	if code == "" {
		code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	if message == "" {
		message = http.StatusText(status)
	}
	body := map[string]any{"error": map[string]any{
		"code": code, "message": message,
		"innerError": map[string]any{
			"date":       time.Now().UTC().Format(time.RFC3339),
			"request-id": w.Header().Get("request-id"), "client-request-id": w.Header().Get("client-request-id"),
		},
	}}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// origin is the fake's own URL as the client reached it. Handlers use it
// rather than s.URL, which is set only once the server is already serving.
func origin(r *http.Request) string { return "https://" + r.Host }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newGUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
