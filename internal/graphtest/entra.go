package graphtest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tokenLifetime is long enough that the client's cache, which refreshes
// five minutes before expiry, reuses tokens.
const tokenLifetime = time.Hour

func (s *Server) routeEntra(mux *http.ServeMux) {
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		base := origin(r) + "/" + r.PathValue("tenant")
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        base + "/oauth2/v2.0/token",
			"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
			"issuer":                                base + "/v2.0",
			"jwks_uri":                              base + "/discovery/v2.0/keys",
			"response_types_supported":              []string{"code", "id_token", "token"},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.token)
	mux.HandleFunc("GET "+identityPath, s.managedIdentityToken)
}

// token implements the client-credentials grant with a secret, a
// certificate-signed client assertion or a federated (workload identity)
// assertion.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tokenReqs++
	s.mu.Unlock()
	if f, ok := s.takeFailure(RouteToken); ok {
		s.fail(w, r, RouteToken, f)
		return
	}
	if err := r.ParseForm(); err != nil {
		entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body is malformed.")
		return
	}
	switch {
	case r.PathValue("tenant") != s.TenantID:
		entraError(w, http.StatusBadRequest, "invalid_request", 90002, "Tenant '"+r.PathValue("tenant")+"' not found.")
		return
	case r.Form.Get("grant_type") != "client_credentials":
		entraError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
		return
	case graphScope(r.Form.Get("scope")) == "":
		entraError(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
		return
	case r.Form.Get("client_id") != s.ClientID:
		entraError(w, http.StatusBadRequest, "unauthorized_client", 700016, "Application with identifier '"+r.Form.Get("client_id")+"' was not found in the directory.")
		return
	}
	secret, assertion := r.Form.Get("client_secret"), r.Form.Get("client_assertion")
	switch {
	case secret != "":
		if secret != s.ClientSecret {
			entraError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
			return
		}
	case s.isFederated(assertion):
		if err := s.checkFederated(assertion); err != nil {
			entraError(w, http.StatusUnauthorized, "invalid_client", 700213, "No matching federated identity record found for presented assertion: "+err.Error())
			return
		}
	default:
		if err := s.checkAssertion(assertion); err != nil {
			entraError(w, http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation: "+err.Error())
			return
		}
	}
	audience := strings.TrimSuffix(graphScope(r.Form.Get("scope")), "/.default")
	expires := s.tokenExpiry()
	access := s.issueToken(audience, expires)
	lifetime := int(time.Until(expires).Round(time.Second).Seconds())
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access,
	})
}

// graphScope finds the resource/.default scope among those MSAL sends
// (it adds openid, profile and offline_access).
func graphScope(scopes string) string {
	for _, s := range strings.Fields(scopes) {
		if strings.HasSuffix(s, "/.default") {
			return s
		}
	}
	return ""
}

// checkAssertion accepts a client assertion as Entra ID does for a
// certificate credential: a JWT naming this app, not expired, whose
// thumbprint header names the registered certificate and whose RS256 or
// PS256 signature its key verifies. Without WithCertificate no
// certificate is registered, so every assertion is refused.
func (s *Server) checkAssertion(jwt string) error {
	if jwt == "" {
		return errors.New("no client_secret or client_assertion")
	}
	if s.opts.cert == nil {
		return errors.New("no certificate registered for the application")
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var header struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var claims struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return fmt.Errorf("header: %v", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return fmt.Errorf("claims: %v", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	sha1Print, sha256Print := sha1.Sum(s.opts.cert.Raw), sha256.Sum256(s.opts.cert.Raw)
	switch {
	case header.X5tS256 == "" && header.X5t == "":
		return errors.New("no x5t or x5t#S256 header")
	case header.X5tS256 != "" && !thumbprintIs(header.X5tS256, sha256Print[:]),
		header.X5t != "" && !thumbprintIs(header.X5t, sha1Print[:]):
		return errors.New("thumbprint does not match the registered certificate")
	case claims.Sub != s.ClientID:
		return errors.New("sub is not the client ID")
	case time.Now().Unix() >= claims.Exp:
		return errors.New("assertion expired")
	}
	key, ok := s.opts.cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("not an RSA certificate")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch header.Alg {
	case "RS256":
		return rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig)
	case "PS256":
		return rsa.VerifyPSS(key, crypto.SHA256, digest[:], sig, nil)
	}
	return errors.New("unsupported alg " + header.Alg)
}

func decodeSegment(segment string, v any) error {
	data, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// thumbprintIs compares an x5t header, which MSAL writes in standard
// base64 where RFC 7515 says base64url, with a certificate digest.
func thumbprintIs(value string, digest []byte) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding} {
		if got, err := enc.DecodeString(value); err == nil {
			return bytes.Equal(got, digest)
		}
	}
	return false
}

// entraError answers in Entra ID's OAuth error shape; aadsts is the
// number Entra ID puts in error_codes and before the description.
func entraError(w http.ResponseWriter, status int, code string, aadsts int, description string) {
	if aadsts != 0 {
		description = fmt.Sprintf("AADSTS%d: %s", aadsts, description)
	}
	writeJSON(w, status, map[string]any{
		"error": code, "error_description": description, "error_codes": []int{aadsts},
		"timestamp": time.Now().UTC().Format(time.DateTime), "trace_id": newGUID(), "correlation_id": newGUID(),
	})
}

// NewCertificate makes a self-signed RSA client certificate and returns it
// with its certificate and private key in one PEM, as admins store them.
func NewCertificate(t testing.TB) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "smtpgw test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return cert, data
}
