package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
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
	c := g.client.Load()
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		err := classify(ctx, err, nil)
		g.metrics.countTokenFailure(err)
		return TokenInfo{}, err
	}
	parts := strings.Split(tok.Token, ".")
	if len(parts) != 3 {
		return TokenInfo{}, fmt.Errorf("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return TokenInfo{}, fmt.Errorf("decode access token: %w", err)
	}
	var claims struct {
		TID   string   `json:"tid"`
		AppID string   `json:"appid"`
		AZP   string   `json:"azp"`
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return TokenInfo{}, fmt.Errorf("decode access token: %w", err)
	}
	if claims.AppID == "" {
		claims.AppID = claims.AZP
	}
	return TokenInfo{TenantID: claims.TID, AppID: claims.AppID, Roles: claims.Roles}, nil
}
