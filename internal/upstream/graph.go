package upstream

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abs "github.com/microsoft/kiota-abstractions-go"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphgocore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Graph request size limits. A request body over about 4 MB gets 413;
// sendMail is used up to smallMessageLimit, above it draft + uploads.
const (
	requestLimit      = 4 << 20
	smallMessageLimit = 3_500_000
)

// clouds maps the [graph] cloud setting to its login host and Graph root.
var clouds = map[string]struct {
	authority cloud.Configuration
	graphRoot string
}{
	config.CloudGlobal:   {cloud.AzurePublic, "https://graph.microsoft.com"},
	config.CloudUSGov:    {cloud.AzureGovernment, "https://graph.microsoft.us"},
	config.CloudUSGovDoD: {cloud.AzureGovernment, "https://dod-graph.microsoft.us"},
	config.CloudChina:    {cloud.AzureChina, "https://microsoftgraph.chinacloudapi.cn"},
}

// Options are what NewGraph takes besides the configuration.
type Options struct {
	RootCAs *x509.CertPool // trusted roots; nil: the system's
	Logger  *slog.Logger
}

// Graph sends messages through Microsoft Graph. It is safe for concurrent use.
type Graph struct {
	cred       azcore.TokenCredential
	scope      string
	adapter    *msgraphsdk.GraphRequestAdapter
	baseURL    string       // Graph root + "/v1.0"
	plain      *http.Client // streamed requests and upload sessions: no middleware
	timeout    time.Duration
	saveToSent bool
	log        *slog.Logger
}

// NewGraph builds the credential and the Graph client for cfg.
func NewGraph(cfg *config.Graph, opts Options) (*Graph, error) {
	c, ok := clouds[cfg.Cloud]
	if !ok {
		c = clouds[config.CloudGlobal]
	}
	authority, graphRoot := c.authority, c.graphRoot
	customAuthority := cfg.AuthorityHost != ""
	if customAuthority {
		authority = cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.AuthorityHost}
	}
	if cfg.Endpoint != "" {
		graphRoot = strings.TrimSuffix(cfg.Endpoint, "/")
	}
	root, err := url.Parse(graphRoot)
	if err != nil {
		return nil, fmt.Errorf("graph endpoint: %w", err)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	if opts.RootCAs != nil {
		transport.TLSClientConfig.RootCAs = opts.RootCAs
	}
	plain := &http.Client{Transport: transport}
	clientOpts := azcore.ClientOptions{
		Cloud:     authority,
		Transport: plain,
		// The delivery engine retries; a retrying credential would only
		// hold a worker while Entra ID is down.
		Retry: policy.RetryOptions{MaxRetries: -1},
	}
	cred, err := newCredential(cfg, clientOpts, customAuthority)
	if err != nil {
		return nil, err
	}

	scope := graphRoot + "/.default"
	// The auth provider silently omits the Authorization header for hosts
	// it does not know, so name the one we talk to.
	auth, err := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{scope}, []string{root.Hostname()})
	if err != nil {
		return nil, fmt.Errorf("graph auth provider: %w", err)
	}
	// The SDK's default middleware gzips request bodies and its retry
	// handler then resends the uncompressed body still labelled gzip; the
	// delivery engine owns retries. So: no compression, no retry handler.
	graphOpts := msgraphgocore.GraphClientOptions{GraphServiceVersion: "v1.0", GraphServiceLibraryVersion: "smtpgw"}
	middleware := []khttp.Middleware{
		msgraphgocore.NewGraphTelemetryHandler(&graphOpts),
		khttp.NewRedirectHandler(),
		newResponseRecorder(),
	}
	httpClient := &http.Client{Transport: khttp.NewCustomTransportWithParentTransport(transport, middleware...)}
	adapter, err := msgraphsdk.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, httpClient)
	if err != nil {
		return nil, fmt.Errorf("graph request adapter: %w", err)
	}
	// The service client registers the JSON (de)serialisers the adapter
	// needs to read Graph's error bodies.
	msgraphsdk.NewGraphServiceClient(adapter)
	baseURL := graphRoot + "/v1.0"
	adapter.SetBaseUrl(baseURL)

	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Graph{
		cred: cred, scope: scope, adapter: adapter, baseURL: baseURL, plain: plain,
		timeout: cfg.Timeout.D(), saveToSent: cfg.SaveToSent(), log: logger,
	}, nil
}

// newCredential picks the credential the configuration names.
func newCredential(cfg *config.Graph, opts azcore.ClientOptions, customAuthority bool) (azcore.TokenCredential, error) {
	switch {
	case cfg.ManagedIdentity:
		if os.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
				ClientOptions: opts, ClientID: cfg.ClientID, TenantID: cfg.TenantID, DisableInstanceDiscovery: customAuthority,
			})
		}
		miOpts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if cfg.ClientID != "" {
			miOpts.ID = azidentity.ClientID(cfg.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(miOpts)
	case cfg.CertificateFile != "":
		data, err := os.ReadFile(cfg.CertificateFile)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		var password []byte
		if cfg.CertificatePasswordFile != "" {
			if password, err = os.ReadFile(cfg.CertificatePasswordFile); err != nil {
				return nil, fmt.Errorf("certificate password: %w", err)
			}
			password = bytes.TrimRight(password, "\r\n")
		}
		certs, key, err := azidentity.ParseCertificates(data, password)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", cfg.CertificateFile, err)
		}
		return azidentity.NewClientCertificateCredential(cfg.TenantID, cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: customAuthority})
	default:
		secret, err := cfg.ClientSecret()
		if err != nil {
			return nil, err
		}
		return azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: customAuthority})
	}
}

// Send delivers msg as env.Mailbox: MIME for signed or encrypted mail,
// sendMail JSON for what fits one request, else draft plus uploads.
func (g *Graph) Send(ctx context.Context, env *envelope.Envelope, msg *convert.Result) (Receipt, error) {
	if msg.MIME != nil {
		return g.sendMIME(ctx, env.Mailbox, msg.MIME)
	}
	// One exact count of the request as it would be sent decides the path
	// and gives its Content-Length.
	size := msg.SendMailRequestSize(g.saveToSent)
	if size > smallMessageLimit {
		return g.sendLarge(ctx, env.Mailbox, msg)
	}
	write := func(w io.Writer) error { return msg.WriteSendMailRequest(w, g.saveToSent) }
	return g.post(ctx, userPath(env.Mailbox, "sendMail"), size, write, nil)
}

// sendMIME posts the message unchanged, base64 encoded, as Graph's MIME
// sendMail expects.
func (g *Graph) sendMIME(ctx context.Context, mailbox string, open convert.Opener) (Receipt, error) {
	r, err := open()
	if err != nil {
		return Receipt{}, &Error{Message: "open message in the spool", Err: err, Temporary: true}
	}
	defer r.Close()
	var body bytes.Buffer
	enc := base64.NewEncoder(base64.StdEncoding, &body)
	_, err = io.Copy(enc, io.LimitReader(r, requestLimit))
	enc.Close()
	if err != nil {
		return Receipt{}, &Error{Message: "read message from the spool", Err: err, Temporary: true}
	}
	if body.Len() > requestLimit {
		return Receipt{}, &Error{Status: http.StatusRequestEntityTooLarge,
			Message: "signed or encrypted message too large: Graph accepts MIME up to about 3 MB"}
	}
	return g.call(ctx, http.MethodPost, userPath(mailbox, "sendMail"), "text/plain", body.Bytes(), nil)
}

// call sends one Graph request through the SDK's adapter (which adds the
// Authorization header) and classifies any failure. When out is not nil the
// JSON response is decoded into it.
func (g *Graph) call(ctx context.Context, method, path, contentType string, body []byte, out any) (Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp := &recordedResponse{}
	ctx = withRecorder(ctx, resp)

	u, err := url.Parse(g.baseURL + path)
	if err != nil {
		return Receipt{}, &Error{Message: "build request URL", Err: err}
	}
	ri := abs.NewRequestInformation()
	ri.Method = methods[method]
	ri.SetUri(*u)
	ri.Headers.TryAdd("Accept", "application/json")
	if body != nil {
		ri.SetStreamContentAndContentType(body, contentType)
	}
	errorMapping := abs.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue}
	var raw []byte
	if out != nil {
		var v any
		v, err = g.adapter.SendPrimitive(ctx, ri, "[]byte", errorMapping)
		raw, _ = v.([]byte)
	} else {
		err = g.adapter.SendNoContent(ctx, ri, errorMapping)
	}
	receipt := Receipt{Status: resp.status, RequestID: resp.header.Get("request-id")}
	if err != nil {
		return receipt, classify(ctx, err, resp)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return receipt, &Error{Status: resp.status, RequestID: receipt.RequestID, Message: "unexpected Graph response", Err: err, Temporary: true}
		}
	}
	return receipt, nil
}

var methods = map[string]abs.HttpMethod{
	http.MethodGet:    abs.GET,
	http.MethodPost:   abs.POST,
	http.MethodPut:    abs.PUT,
	http.MethodDelete: abs.DELETE,
}

// userPath is /users/{mailbox}/rest with the mailbox escaped.
func userPath(mailbox string, rest ...string) string {
	parts := append([]string{"/users", url.PathEscape(mailbox)}, rest...)
	return strings.Join(parts, "/")
}
