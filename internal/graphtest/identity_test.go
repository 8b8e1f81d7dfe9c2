package graphtest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const serviceAccount = "system:serviceaccount:smtpgw:smtpgw"

func TestFederatedAssertion(t *testing.T) {
	s := New(t, WithFederatedCredential(serviceAccount))
	other := New(t, WithFederatedCredential(serviceAccount))
	tests := []struct {
		name      string
		assertion string
		status    int
		aadsts    string
	}{
		{"service account token", s.ServiceAccountToken(t, serviceAccount), 200, ""},
		{"another service account", s.ServiceAccountToken(t, "system:serviceaccount:default:default"), 401, "AADSTS700213"},
		{"another cluster's issuer", other.ServiceAccountToken(t, serviceAccount), 401, "AADSTS700027"},
		{"tampered claims", tamper(t, s.ServiceAccountToken(t, serviceAccount)), 401, "AADSTS700213"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := secretForm(s)
			form.Del("client_secret")
			form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			form.Set("client_assertion", tt.assertion)
			status, answer := tokenRequest(t, s, form)
			desc, _ := answer["error_description"].(string)
			if status != tt.status || !strings.HasPrefix(desc, tt.aadsts) {
				t.Errorf("got %d %v, want %d %s", status, answer, tt.status, tt.aadsts)
			}
		})
	}
}

// tamper rewrites a JWT's claims, keeping the original signature.
func tamper(t *testing.T, jwt string) string {
	parts := strings.Split(jwt, ".")
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		t.Fatal(err)
	}
	claims["exp"] = claims["exp"].(float64) + 3600
	data, _ := json.Marshal(claims)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(data) + "." + parts[2]
}

func TestManagedIdentityEndpoint(t *testing.T) {
	s := New(t)
	query := func(clientID string) string {
		q := url.Values{"api-version": {appServiceAPIVersion}, "resource": {s.URL}}
		if clientID != "" {
			q.Set("client_id", clientID)
		}
		return s.IdentityEndpoint() + "?" + q.Encode()
	}
	tests := []struct {
		name   string
		url    string
		header string
		status int
	}{
		{"system-assigned", query(""), s.IdentityHeader, 200},
		{"user-assigned", query(s.ClientID), s.IdentityHeader, 200},
		{"unknown user-assigned identity", query(newGUID()), s.IdentityHeader, 400},
		{"wrong header", query(""), "guess", 401},
		{"old api-version", strings.Replace(query(""), appServiceAPIVersion, "2017-09-01", 1), s.IdentityHeader, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := do(t, s, http.MethodGet, tt.url, "", map[string]string{"X-IDENTITY-HEADER": tt.header}, nil)
			if status != tt.status {
				t.Fatalf("got %d %s, want %d", status, body, tt.status)
			}
			if status != 200 {
				return
			}
			var answer struct {
				AccessToken string `json:"access_token"`
				ExpiresOn   string `json:"expires_on"`
				Resource    string `json:"resource"`
			}
			if err := json.Unmarshal(body, &answer); err != nil {
				t.Fatal(err)
			}
			if answer.Resource != s.URL || answer.ExpiresOn == "" || jwtClaims(t, answer.AccessToken)["aud"] != s.URL {
				t.Errorf("answer %s", body)
			}
			// The token is good for Graph.
			status, _, _ = do(t, s, http.MethodPost, "/v1.0/users/scanner@example.com/sendMail", answer.AccessToken,
				map[string]string{"Content-Type": "application/json"}, sendMailJSON(t, false))
			if status != http.StatusAccepted {
				t.Errorf("sendMail with the managed identity's token: %d", status)
			}
		})
	}
}
