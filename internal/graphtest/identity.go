package graphtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Workload identity (Kubernetes) and managed identity (App Service,
// Container Apps) as Entra ID and the Azure host serve them, on the same
// TLS origin as the rest of the fake.

const (
	// federatedAudience is the audience Entra ID requires of a federated
	// token exchanged for an access token.
	federatedAudience = "api://AzureADTokenExchange"
	// appServiceAPIVersion is the managed identity protocol version MSAL
	// speaks to IDENTITY_ENDPOINT.
	appServiceAPIVersion = "2019-08-01"
	identityPath         = "/msi/token"
)

// WithFederatedCredential registers a federated identity credential on the
// app: it trusts tokens the fake's cluster issuer signs for subject (for
// Kubernetes, "system:serviceaccount:NAMESPACE:NAME").
func WithFederatedCredential(subject string) Option {
	return func(o *options) { o.federated = append(o.federated, subject) }
}

// issuer is the fake's Kubernetes service account token issuer.
type issuer struct {
	key *rsa.PrivateKey
	kid string
}

func newIssuer() *issuer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return &issuer{key: key, kid: "graphtest-" + randomHex(4)}
}

func (s *Server) issuerURL() string { return s.URL + "/oidc-issuer" }

// ServiceAccountToken is the projected service account token Kubernetes
// writes to AZURE_FEDERATED_TOKEN_FILE: a JWT for subject, signed by the
// cluster issuer an app registered WithFederatedCredential trusts.
func (s *Server) ServiceAccountToken(t testing.TB, subject string) string {
	t.Helper()
	if s.issuer == nil {
		t.Fatal("graphtest: ServiceAccountToken needs WithFederatedCredential")
	}
	now := time.Now()
	return signJWT(s.issuer.key, s.issuer.kid, map[string]any{
		"iss": s.issuerURL(), "sub": subject, "aud": []string{federatedAudience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
}

// isFederated tells a service account token (signed by the cluster issuer's
// key) from a certificate assertion.
func (s *Server) isFederated(jwt string) bool {
	var header struct {
		Kid string `json:"kid"`
	}
	head, _, _ := strings.Cut(jwt, ".")
	return s.issuer != nil && decodeSegment(head, &header) == nil && header.Kid == s.issuer.kid
}

// checkFederated accepts a federated assertion as Entra ID does: signed by
// the trusted issuer, for the token exchange audience, not expired, and for
// a subject the app has a federated credential for.
func (s *Server) checkFederated(jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var claims struct {
		Iss string   `json:"iss"`
		Sub string   `json:"sub"`
		Aud []string `json:"aud"`
		Exp int64    `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch {
	case rsa.VerifyPKCS1v15(&s.issuer.key.PublicKey, crypto.SHA256, digest[:], sig) != nil:
		return errors.New("signature does not verify with the issuer's key")
	case claims.Iss != s.issuerURL():
		return errors.New("issuer " + claims.Iss + " is not trusted")
	case !slices.Contains(claims.Aud, federatedAudience):
		return errors.New("audience is not " + federatedAudience)
	case time.Now().Unix() >= claims.Exp:
		return errors.New("assertion expired")
	case !slices.Contains(s.opts.federated, claims.Sub):
		return errors.New("no federated credential for subject " + claims.Sub)
	}
	return nil
}

// IdentityEndpoint is the IDENTITY_ENDPOINT of an App Service or Container
// Apps host whose managed identity is the fake's app; IdentityHeader is its
// IDENTITY_HEADER.
func (s *Server) IdentityEndpoint() string { return s.URL + identityPath }

// managedIdentityToken answers as the App Service identity endpoint does:
// a token for the resource asked, to a caller that knows the header secret.
func (s *Server) managedIdentityToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tokenReqs++
	s.mu.Unlock()
	q := r.URL.Query()
	switch {
	case r.Header.Get("X-IDENTITY-HEADER") != s.IdentityHeader:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"})
		return
	case q.Get("api-version") != appServiceAPIVersion:
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "unsupported api-version " + q.Get("api-version")})
		return
	case !strings.HasPrefix(q.Get("resource"), "https://"):
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "resource must be an https URL"})
		return
	case q.Get("client_id") != "" && q.Get("client_id") != s.ClientID:
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "no user-assigned identity " + q.Get("client_id") + " on this host"})
		return
	}
	expires := s.tokenExpiry()
	access := s.issueToken(q.Get("resource"), expires)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "expires_on": strconv.FormatInt(expires.Unix(), 10),
		"resource": q.Get("resource"), "token_type": "Bearer", "client_id": s.ClientID,
	})
}
