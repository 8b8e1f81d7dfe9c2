package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// serviceAccount is the Kubernetes service account the app registration
// trusts in the workload identity tests.
const serviceAccount = "system:serviceaccount:smtpgw:smtpgw"

// identityGraphTOML is a [graph] section for the fake with no secret and
// no certificate: the token comes from the platform.
func identityGraphTOML(fake *graphtest.Server) string {
	return fmt.Sprintf("[graph]\ntenant_id = %q\nclient_id = %q\nmanaged_identity = true\nauthority_host = %q\nendpoint = %q\n",
		fake.TenantID, fake.ClientID, fake.URL+"/", fake.URL)
}

// workloadIdentityEnv is what the Azure workload identity webhook puts into
// a pod: the AZURE_* variables and the projected service account token.
func workloadIdentityEnv(t *testing.T, fake *graphtest.Server, dir, token string) []string {
	tokenFile := filepath.Join(dir, "azure-identity-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"SSL_CERT_FILE=" + fake.WriteCAFile(dir), "SMTPGW_CLIENT_SECRET=",
		"AZURE_TENANT_ID=" + fake.TenantID, "AZURE_CLIENT_ID=" + fake.ClientID,
		"AZURE_FEDERATED_TOKEN_FILE=" + tokenFile, "AZURE_AUTHORITY_HOST=" + fake.URL + "/",
		"IDENTITY_ENDPOINT=", "IDENTITY_HEADER=",
	}
}

// TestWorkloadIdentity delivers with the Kubernetes way: the service
// account token exchanged at Entra ID, no secret anywhere.
func TestWorkloadIdentity(t *testing.T) {
	fake := graphtest.New(t, graphtest.WithFederatedCredential(serviceAccount))
	dir := t.TempDir()
	env := workloadIdentityEnv(t, fake, dir, fake.ServiceAccountToken(t, serviceAccount))
	g := startGateway(t, dir, gatewayConfig(t, dir, identityGraphTOML(fake)), env...)
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: "Subject: workload identity\n\nbody\n"})
	sent := fake.WaitSent(t, 1, deliveryTimeout)
	if sent[0].Mailbox != "noreply@contoso.com" || sent[0].Message.Subject != "workload identity" {
		t.Errorf("sent %+v", sent[0])
	}
	if fake.TokenRequests() == 0 {
		t.Error("no token was requested from Entra ID")
	}
}

// TestWorkloadIdentityRefused: when the app has no federated credential for
// the pod's service account, Entra ID refuses the token and nothing is sent.
func TestWorkloadIdentityRefused(t *testing.T) {
	fake := graphtest.New(t, graphtest.WithFederatedCredential(serviceAccount))
	dir := t.TempDir()
	env := workloadIdentityEnv(t, fake, dir, fake.ServiceAccountToken(t, "system:serviceaccount:default:default"))
	g := startGateway(t, dir, gatewayConfig(t, dir, identityGraphTOML(fake)), env...)
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: "Subject: refused\n\nbody\n"})
	waitLog(t, g, "invalid_client", 1)
	if n := len(fake.Sent()); n != 0 {
		t.Errorf("%d messages sent without a token", n)
	}
}

// TestManagedIdentity delivers the App Service / Container Apps way: the
// host's IDENTITY_ENDPOINT and IDENTITY_HEADER.
func TestManagedIdentity(t *testing.T) {
	fake := graphtest.New(t)
	dir := t.TempDir()
	g := startGateway(t, dir, gatewayConfig(t, dir, identityGraphTOML(fake)),
		"SSL_CERT_FILE="+fake.WriteCAFile(dir), "SMTPGW_CLIENT_SECRET=", "AZURE_FEDERATED_TOKEN_FILE=",
		"IDENTITY_ENDPOINT="+fake.IdentityEndpoint(), "IDENTITY_HEADER="+fake.IdentityHeader)
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: "Subject: managed identity\n\nbody\n"})
	sent := fake.WaitSent(t, 1, deliveryTimeout)
	if sent[0].Mailbox != "noreply@contoso.com" || sent[0].Message.Subject != "managed identity" {
		t.Errorf("sent %+v", sent[0])
	}
	if fake.TokenRequests() == 0 {
		t.Error("the identity endpoint was not asked for a token")
	}
}
