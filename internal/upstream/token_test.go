package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

const exchangeScope = graphtest.ExchangeAudience + "/.default"

func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestTokenOnePerScopeSharedByAllCallers(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))

	const callers = 20
	tokens := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			tok, err := g.Token(context.Background(), exchangeScope)
			if err != nil {
				t.Error(err)
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	for _, tok := range tokens[1:] {
		if tok != tokens[0] {
			t.Fatal("callers got different tokens")
		}
	}
	if n := fake.TokenRequests(); n != 1 {
		t.Errorf("%d token requests for one scope, want 1", n)
	}
	claims := claimsOf(t, tokens[0])
	if claims["aud"] != graphtest.ExchangeAudience || claims["iss"] != fake.Issuer() || claims["appid"] != fake.ClientID {
		t.Errorf("claims = %v", claims)
	}

	// Another scope is another token.
	if _, err := g.Token(context.Background(), "https://graph.microsoft.com/.default"); err != nil {
		t.Fatal(err)
	}
	if n := fake.TokenRequests(); n != 2 {
		t.Errorf("%d token requests for two scopes, want 2", n)
	}
}

func TestTokenRefusedIsClassifiedAndFixedByReload(t *testing.T) {
	fake := graphtest.New(t)
	dir := t.TempDir()
	secretFile := fake.WriteSecretFile(dir)
	cfg := fake.GraphConfig(t)
	cfg.ClientSecretFile = secretFile
	os.WriteFile(secretFile, []byte("wrong\n"), 0o600)
	g := newGraph(t, fake, cfg)

	_, err := g.Token(context.Background(), exchangeScope)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindCredential || e.Scope != ScopeTarget || e.AADSTS != "AADSTS7000215" || e.Explanation == "" {
		t.Fatalf("error = %#v", err)
	}

	fake.WriteSecretFile(dir)
	if err := g.ReloadCredential(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Token(context.Background(), exchangeScope); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
}

func TestTokenEntraDownIsTransient(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	fake.FailNext(graphtest.RouteToken, 1, graphtest.Failure{Status: 503})
	_, err := g.Token(context.Background(), exchangeScope)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTransient {
		t.Fatalf("error = %#v", err)
	}
	if _, err := g.Token(context.Background(), exchangeScope); err != nil {
		t.Fatalf("next try: %v", err)
	}
}
