package upstream

import (
	"context"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// tokenRenewal is how long before its expiry a cached token is replaced,
// as azidentity does: a token handed out is good for at least this long.
const tokenRenewal = 5 * time.Minute

// tokenCache holds one access token per scope of one credential, shared by
// every message and session. Callers of one scope wait for a single token
// request instead of each sending their own.
type tokenCache struct {
	cred azcore.TokenCredential

	mu     sync.Mutex
	scopes map[string]*scopeToken
}

// scopeToken is the cached token of one scope; its mutex is held while
// the token is requested.
type scopeToken struct {
	mu  sync.Mutex
	tok azcore.AccessToken
}

func newTokenCache(cred azcore.TokenCredential) *tokenCache {
	return &tokenCache{cred: cred, scopes: map[string]*scopeToken{}}
}

// token returns a token for scope, cached until tokenRenewal before it
// expires. A failure is classified like every Entra ID failure.
func (c *tokenCache) token(ctx context.Context, scope string) (string, error) {
	c.mu.Lock()
	st := c.scopes[scope]
	if st == nil {
		st = &scopeToken{}
		c.scopes[scope] = st
	}
	c.mu.Unlock()

	st.mu.Lock()
	defer st.mu.Unlock()
	if time.Until(st.tok.ExpiresOn) > tokenRenewal {
		return st.tok.Token, nil
	}
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return "", classify(ctx, err, nil)
	}
	st.tok = tok
	return tok.Token, nil
}

// Token returns an access token of the app credential for scope, such as
// [exchange] scope. One token per scope is cached and shared by every
// caller, and renewed five minutes before it expires; a reload that
// changes the credential starts a new cache. Errors are *Error, with
// Entra ID's refusals classified as for sending (KindCredential,
// ScopeTarget, AADSTS code and explanation).
func (g *Graph) Token(ctx context.Context, scope string) (string, error) {
	tok, err := g.client.Load().tokens.token(ctx, scope)
	g.metrics.countTokenFailure(err)
	return tok, err
}
