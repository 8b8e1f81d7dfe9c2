package upstream

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/graphtest"
)

func TestClassification(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		failure    graphtest.Failure
		kind       Kind
		scope      Scope
		status     int
		code       string
		retryAfter time.Duration
	}{
		{"429 seconds", graphtest.Failure{Status: 429, Code: "ApplicationThrottled", RetryAfter: "7"}, KindTransient, ScopeMailbox, 429, "ApplicationThrottled", 7 * time.Second},
		{"429 date", graphtest.Failure{Status: 429, RetryAfter: date}, KindTransient, ScopeMailbox, 429, "TooManyRequests", 90 * time.Second},
		{"500", graphtest.Failure{Status: 500}, KindTransient, ScopeMessage, 500, "", 0},
		{"503", graphtest.Failure{Status: 503, RetryAfter: "3"}, KindTransient, ScopeMessage, 503, "", 3 * time.Second},
		{"hang", graphtest.Failure{Hang: true}, KindTransient, ScopeMessage, 0, "", 0},
		{"401", graphtest.Failure{Status: 401, Code: "InvalidAuthenticationToken"}, KindCredential, ScopeTarget, 401, "InvalidAuthenticationToken", 0},
		{"403 access denied", graphtest.Failure{Status: 403, Code: "ErrorAccessDenied"}, KindCredential, ScopeMailbox, 403, "ErrorAccessDenied", 0},
		{"403 send as denied", graphtest.Failure{Status: 403, Code: "ErrorSendAsDenied"}, KindMessage, ScopeMessage, 403, "ErrorSendAsDenied", 0},
		{"404 invalid user", graphtest.Failure{Status: 404, Code: "ErrorInvalidUser"}, KindMessage, ScopeMessage, 404, "ErrorInvalidUser", 0},
		{"413 html", graphtest.Failure{Status: 413, HTML: true}, KindMessage, ScopeMessage, 413, "", 0},
		{"400", graphtest.Failure{Status: 400, Code: "ErrorInvalidRecipients"}, KindMessage, ScopeMessage, 400, "ErrorInvalidRecipients", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := graphtest.New(t)
			cfg := fake.GraphConfig(t)
			cfg.Timeout = config.Duration(500 * time.Millisecond)
			g := newGraph(t, fake, cfg)
			fake.FailNext(graphtest.RouteSendMail, 1, tt.failure)
			_, err := g.Send(context.Background(), testEnv, convertedMessage(message(tt.name)))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.Kind != tt.kind || e.Scope != tt.scope || e.Status != tt.status || (tt.code != "" && e.Code != tt.code) {
				t.Errorf("got %s/%s status=%d code=%q; want %s/%s %d %q (%v)", e.Kind, e.Scope, e.Status, e.Code, tt.kind, tt.scope, tt.status, tt.code, e)
			}
			if d := e.RetryAfter - tt.retryAfter; d < -2*time.Second || d > 2*time.Second {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.retryAfter)
			}
			if tt.status != 0 && !tt.failure.HTML && (e.RequestID == "" || e.ClientRequestID == "") {
				t.Errorf("request-id %q, client-request-id %q: want both", e.RequestID, e.ClientRequestID)
			}
			if e.Kind != KindTransient && e.Explanation == "" {
				t.Error("no explanation")
			}
		})
	}
}

// Every refusal of the credential by Entra ID holds the whole target, with
// the AADSTS code, Entra ID's description and what to do.
func TestTokenRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(fake *graphtest.Server, cfg *config.Graph)
		aadsts  string
		code    string
		explain string
	}{
		{"wrong secret", func(_ *graphtest.Server, cfg *config.Graph) {
			os.WriteFile(cfg.ClientSecretFile, []byte("wrong"), 0o600)
		}, "AADSTS7000215", "invalid_client", "new client secret"},
		{"unknown app", func(_ *graphtest.Server, cfg *config.Graph) {
			cfg.ClientID = "00000000-0000-0000-0000-000000000001"
		}, "AADSTS700016", "unauthorized_client", "client_id"},
		{"unknown tenant", func(_ *graphtest.Server, cfg *config.Graph) {
			cfg.TenantID = "00000000-0000-0000-0000-000000000002"
		}, "AADSTS90002", "invalid_request", "tenant_id"},
		{"expired secret", func(fake *graphtest.Server, _ *config.Graph) {
			fake.FailNext(graphtest.RouteToken, 1, graphtest.Failure{Status: 401, Code: "invalid_client", Message: "AADSTS7000222: The provided client secret keys for app '…' are expired."})
		}, "AADSTS7000222", "invalid_client", "expired"},
		{"conditional access", func(fake *graphtest.Server, _ *config.Graph) {
			fake.FailNext(graphtest.RouteToken, 1, graphtest.Failure{Status: 400, Code: "invalid_grant", Message: "AADSTS53003: Access has been blocked by Conditional Access policies."})
		}, "AADSTS53003", "invalid_grant", "Conditional Access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := graphtest.New(t)
			cfg := fake.GraphConfig(t)
			tt.setup(fake, cfg)
			reg := prometheus.NewRegistry()
			g, err := NewGraph(cfg, Options{RootCAs: fake.CertPool(), Metrics: reg})
			if err != nil {
				t.Fatal(err)
			}
			_, err = g.Send(context.Background(), testEnv, convertedMessage(message("x")))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.Kind != KindCredential || e.Scope != ScopeTarget || e.AADSTS != tt.aadsts || e.Code != tt.code {
				t.Errorf("got %s/%s %s %s, want credential/target %s %s (%v)", e.Kind, e.Scope, e.AADSTS, e.Code, tt.aadsts, tt.code, e)
			}
			if !strings.HasPrefix(e.Message, tt.aadsts+":") || strings.Contains(e.Message, "Trace ID") {
				t.Errorf("Message = %q, want Entra ID's description", e.Message)
			}
			if !strings.Contains(e.Explanation, tt.explain) {
				t.Errorf("Explanation = %q, want it to mention %q", e.Explanation, tt.explain)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Error("the secret reached the error text")
			}
			if n := testutil.ToFloat64(g.metrics.tokenFailures.WithLabelValues(tt.aadsts)); n != 1 {
				t.Errorf("token failures counted for %s: %v, want 1", tt.aadsts, n)
			}
		})
	}
}

func TestTokenEndpointTroubleIsTransient(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	fake.FailNext(graphtest.RouteToken, 1, graphtest.Failure{Status: 503})
	_, err := g.Send(context.Background(), testEnv, convertedMessage(message("x")))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTransient {
		t.Fatalf("err = %v, want a transient failure", err)
	}
}

// An upload session's URL carries its own authorisation: its refusal is
// no reason to hold every message.
func TestUploadRefusalIsNotTheCredential(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	fake.FailNext(graphtest.RouteUpload, 10, graphtest.Failure{Status: 401})
	_, err := g.Send(context.Background(), testEnv, convertedMessage(message("large", bytesAttachment("big.pdf", patterned(4<<20)))))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTransient || e.Scope != ScopeMessage {
		t.Fatalf("err = %v, want a transient failure of this message", err)
	}
}

// The token is for the cloud's Graph even when requests go to another
// endpoint (the fake, like a proxy); a scope key overrides it.
func TestScopeComesFromCloud(t *testing.T) {
	fake := graphtest.New(t)
	cfg := fake.GraphConfig(t)
	if cfg.Scope != graphtest.Audience+"/.default" {
		t.Fatalf("default scope = %q", cfg.Scope)
	}
	g := newGraph(t, fake, cfg)
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("x"))); err != nil {
		t.Fatal(err)
	}

	cfg.Scope = "https://graph.microsoft.us/.default"
	g = newGraph(t, fake, cfg)
	_, err := g.Send(context.Background(), testEnv, convertedMessage(message("x")))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindCredential || e.Status != 401 {
		t.Fatalf("err = %v, want Graph refusing a token for another cloud", err)
	}
}

// Fixing the secret file is enough: ReloadCredential reads it again.
func TestReloadCredential(t *testing.T) {
	fake := graphtest.New(t)
	cfg := fake.GraphConfig(t)
	os.WriteFile(cfg.ClientSecretFile, []byte("wrong\n"), 0o600)
	g := newGraph(t, fake, cfg)
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("x"))); err == nil {
		t.Fatal("sent with a wrong secret")
	}
	if err := g.ReloadCredential(); err != nil {
		t.Fatal(err)
	}
	before := fake.TokenRequests()
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("x"))); err == nil {
		t.Fatal("sent with a wrong secret")
	}
	if fake.TokenRequests() != before+1 {
		t.Fatal("an unchanged credential was not asked again")
	}

	os.WriteFile(cfg.ClientSecretFile, []byte(fake.ClientSecret+"\n"), 0o600)
	if err := g.ReloadCredential(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("x"))); err != nil {
			t.Fatal(err)
		}
	}
	// An unchanged file keeps the credential and its cached token.
	tokens := fake.TokenRequests()
	if err := g.ReloadCredential(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("x"))); err != nil {
		t.Fatal(err)
	}
	if fake.TokenRequests() != tokens {
		t.Error("a reload of unchanged files asked for a new token")
	}

	os.Remove(cfg.ClientSecretFile)
	if err := g.ReloadCredential(); err == nil {
		t.Error("no error for a missing secret file")
	}
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("x"))); err != nil {
		t.Errorf("the credential in use was lost: %v", err)
	}
}

// Apply switches to a new configuration, here from a secret to a
// certificate, and reports the certificate's expiry.
func TestApplyAndCertificateExpiry(t *testing.T) {
	cert, pemData := graphtest.NewCertificate(t)
	fake := graphtest.New(t, graphtest.WithCertificate(cert))
	cfg := fake.GraphConfig(t)
	reg := prometheus.NewRegistry()
	g, err := NewGraph(cfg, Options{RootCAs: fake.CertPool(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "smtpgw_graph_client_certificate_expiry_seconds"); n != 0 {
		t.Error("certificate expiry reported without a certificate")
	}

	next := *cfg
	next.ClientSecretFile, next.CertificateFile = "", t.TempDir()+"/client.pem"
	os.WriteFile(next.CertificateFile, pemData, 0o600)
	bad := next
	bad.CertificateFile += ".missing"
	if err := g.Apply(&bad); err == nil {
		t.Fatal("Apply accepted a missing certificate file")
	}
	if err := g.Apply(&next); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("cert"))); err != nil {
		t.Fatal(err)
	}
	want := time.Until(cert.NotAfter).Seconds()
	if got := gaugeValue(t, reg, "smtpgw_graph_client_certificate_expiry_seconds"); got < want-60 || got > want+1 {
		t.Errorf("expiry in %.0f s, want %.0f", got, want)
	}
}

// The client secret's expiry comes from client_secret_expires, and Apply
// changes it.
func TestClientSecretExpiry(t *testing.T) {
	fake := graphtest.New(t)
	expires := time.Now().UTC().AddDate(0, 0, 10).Truncate(24 * time.Hour)
	reg := prometheus.NewRegistry()
	g, err := NewGraph(fake.GraphConfigWith(t, "client_secret_expires = "+expires.Format(time.DateOnly)+"\n"), Options{RootCAs: fake.CertPool(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	want := time.Until(expires).Seconds()
	if got := gaugeValue(t, reg, "smtpgw_graph_client_secret_expiry_seconds"); got < want-60 || got > want+1 {
		t.Errorf("secret expires in %.0f s, want %.0f", got, want)
	}
	if err := g.Apply(fake.GraphConfig(t)); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "smtpgw_graph_client_secret_expiry_seconds"); n != 0 {
		t.Error("secret expiry still reported once client_secret_expires was removed")
	}
}

// gaugeValue is the value of the gauge called name in reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
