package graphtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"sync"
	"time"
)

// ExchangeAudience is the audience of tokens for Exchange Online's IMAP,
// POP and SMTP (scope https://outlook.office365.com/.default).
const ExchangeAudience = "https://outlook.office365.com"

// exchangeRoles are the roles of an Exchange token: the application
// permissions on "Office 365 Exchange Online" the issue's setup grants.
var exchangeRoles = []string{"IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"}

// clockSkew is how far back issued tokens' iat and nbf lie: servers that
// check them without leeway (Dovecot) refuse a token "not yet valid" when
// their clock reads a second less than the fake's.
const clockSkew = 5 * time.Second

// signingKey is the fake Entra ID's token signing key, one per test binary:
// generating a 2048-bit RSA key per fake would slow every test down.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return key
})

// SigningKeyID is the kid header of every token the fakes issue.
const SigningKeyID = "graphtest-signing-key"

// SigningKeyPEM is the public key that verifies the fakes' tokens, as a
// PEM "PUBLIC KEY" block: what a resource server (Dovecot) is given.
func SigningKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(&signingKey().PublicKey)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Issuer is the iss claim of the fake's tokens, as Entra ID writes it in
// the v1 access tokens that Graph and Exchange Online get.
func (s *Server) Issuer() string { return "https://sts.windows.net/" + s.TenantID + "/" }

// ServicePrincipalID is the object ID of the app's service principal (its
// Enterprise application), the sub and oid of app-only tokens.
func (s *Server) ServicePrincipalID() string { return s.servicePrincipalID }

// issueToken signs an app-only access token for audience as Entra ID
// does (RS256, typ JWT, kid) and remembers it for the fake's Graph.
func (s *Server) issueToken(audience string, expires time.Time) string {
	roles := s.opts.roles
	if audience == ExchangeAudience {
		roles = exchangeRoles
	}
	now := time.Now().Add(-clockSkew).Unix()
	access := signJWT(signingKey(), SigningKeyID, map[string]any{
		"aud": audience, "iss": s.Issuer(), "tid": s.TenantID,
		"appid": s.ClientID, "azp": s.ClientID, "roles": roles,
		"sub": s.servicePrincipalID, "oid": s.servicePrincipalID, "idtyp": "app",
		"iat": now, "nbf": now, "exp": expires.Unix(), "jti": randomHex(8),
	})
	s.mu.Lock()
	s.tokens[access] = audience
	s.mu.Unlock()
	return access
}

// signJWT signs claims with key as RS256, naming the key kid in the header.
func signJWT(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return signed + "." + enc.EncodeToString(sig)
}
