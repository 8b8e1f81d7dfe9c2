package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
)

// TokenInfo is what an access token says about the app registration.
type TokenInfo struct {
	TenantID string
	AppID    string
	Roles    []string // application permissions granted with admin consent
}

// Check acquires a token for Graph and reads its claims, so that an admin
// sees at once whether the tenant, app and permissions are right.
func (g *Graph) Check(ctx context.Context) (TokenInfo, error) {
	tok, err := g.Token(ctx, g.client.Load().scope)
	if err != nil {
		return TokenInfo{}, err
	}
	return ReadTokenInfo(tok)
}

// ReadTokenInfo reads what a token says about the app, without checking
// its signature: for `check` to explain, never to decide.
func ReadTokenInfo(token string) (TokenInfo, error) {
	claims, err := readClaims(token)
	if err != nil {
		return TokenInfo{}, err
	}
	return TokenInfo{TenantID: claims.TID, AppID: claims.AppID, Roles: claims.Roles}, nil
}

// tokenClaims are the claims of an app-only token that say what the app
// is and may do.
type tokenClaims struct {
	TID      string   `json:"tid"`
	AppID    string   `json:"appid"`
	AZP      string   `json:"azp"`
	ObjectID string   `json:"oid"` // the service principal's: the Enterprise application's object id
	Roles    []string `json:"roles"`
	Exp      int64    `json:"exp"` // when it expires, in Unix seconds
}

// readClaims reads a JWT's claims without checking its signature: only to
// explain, never to decide.
func readClaims(token string) (tokenClaims, error) {
	var claims tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims, fmt.Errorf("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return claims, fmt.Errorf("decode access token: %w", err)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return claims, fmt.Errorf("decode access token: %w", err)
	}
	if claims.AppID == "" {
		claims.AppID = claims.AZP
	}
	return claims, nil
}

// LoginHost is the Entra ID host the configuration gets tokens from, for
// messages that say which host could not be reached.
func LoginHost(cfg *config.Graph) string {
	authority := cfg.AuthorityHost
	if authority == "" {
		c, ok := authorities[cfg.Cloud]
		if !ok {
			c = authorities[config.CloudGlobal]
		}
		authority = c.ActiveDirectoryAuthorityHost
	}
	if u, err := url.Parse(authority); err == nil && u.Host != "" {
		return u.Host
	}
	return authority
}

// CertificateExpiry reads certificate_file (decrypted with
// certificate_password_file when there is one) and returns when its first
// certificate, the client certificate, expires.
func CertificateExpiry(cfg *config.Graph) (time.Time, error) {
	files, err := readCredentialFiles(cfg)
	if err != nil {
		return time.Time{}, err
	}
	certs, _, err := parseClientCertificate(cfg, files)
	if err != nil {
		return time.Time{}, err
	}
	return certs[0].NotAfter, nil
}
