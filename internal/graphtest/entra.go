package graphtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tokenLifetime is long enough that the client's cache, which refreshes
// five minutes before expiry, reuses tokens.
const tokenLifetime = 3600

func (s *Server) routeEntra(mux *http.ServeMux) {
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		base := s.URL + "/" + r.PathValue("tenant")
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
}

// token implements the client-credentials grant with a secret or a
// certificate-signed client assertion.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tokenReqs++
	s.mu.Unlock()
	if f, ok := s.takeFailure(RouteToken); ok {
		s.fail(w, r, f)
		return
	}
	if err := r.ParseForm(); err != nil {
		entraError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed request")
		return
	}
	switch {
	case r.PathValue("tenant") != s.TenantID:
		entraError(w, http.StatusBadRequest, "invalid_request", "AADSTS90002: Tenant not found.")
		return
	case r.Form.Get("grant_type") != "client_credentials":
		entraError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: unsupported grant type")
		return
	case graphScope(r.Form.Get("scope")) == "":
		entraError(w, http.StatusBadRequest, "invalid_scope", "AADSTS1002012: scope must end in /.default")
		return
	case r.Form.Get("client_id") != s.ClientID:
		entraError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
		return
	}
	if !s.clientAuthenticated(r) {
		entraError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	claims := map[string]any{
		"aud": strings.TrimSuffix(graphScope(r.Form.Get("scope")), "/.default"), "iss": s.URL + "/" + s.TenantID + "/",
		"tid": s.TenantID, "appid": s.ClientID, "azp": s.ClientID, "roles": s.opts.roles,
		"exp": time.Now().Add(tokenLifetime * time.Second).Unix(), "jti": randomHex(8),
	}
	access := fakeJWT(claims)
	s.mu.Lock()
	s.tokens[access] = true
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": tokenLifetime, "ext_expires_in": tokenLifetime, "access_token": access,
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

func (s *Server) clientAuthenticated(r *http.Request) bool {
	if secret := r.Form.Get("client_secret"); secret != "" {
		return secret == s.ClientSecret
	}
	assertion := r.Form.Get("client_assertion")
	return assertion != "" && s.opts.cert != nil && verifyAssertion(assertion, s.opts.cert) == nil
}

// verifyAssertion checks a client assertion's RS256 or PS256 signature.
func verifyAssertion(jwt string, cert *x509.Certificate) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return err
	}
	key, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("not an RSA certificate")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch h.Alg {
	case "RS256":
		return rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig)
	case "PS256":
		return rsa.VerifyPSS(key, crypto.SHA256, digest[:], sig, nil)
	}
	return errors.New("unsupported alg " + h.Alg)
}

func entraError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]any{
		"error": code, "error_description": description, "error_codes": []int{0},
		"timestamp": time.Now().UTC().Format(time.DateTime), "trace_id": newGUID(), "correlation_id": newGUID(),
	})
}

// fakeJWT is JWT-shaped with an unverifiable signature: clients only read
// access tokens' claims, never check them.
func fakeJWT(claims map[string]any) string {
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(header) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString([]byte(randomHex(16)))
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
