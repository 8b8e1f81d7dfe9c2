package upstream

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphgocore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/config"
)

// idleConnections is how many connections to Graph are kept open between
// calls: more than the delivery engine's workers ever use at once.
const idleConnections = 64

// authorities maps the [graph] cloud setting to its Entra ID login host.
var authorities = map[string]cloud.Configuration{
	config.CloudGlobal:   cloud.AzurePublic,
	config.CloudUSGov:    cloud.AzureGovernment,
	config.CloudUSGovDoD: cloud.AzureGovernment,
	config.CloudChina:    cloud.AzureChina,
}

// Options are what NewGraph takes besides the configuration.
type Options struct {
	RootCAs *x509.CertPool        // trusted roots; nil: the system's
	Logger  *slog.Logger          // default slog.Default()
	Metrics prometheus.Registerer // nil: metrics are kept but not registered
}

// Graph sends messages through Microsoft Graph. It is safe for concurrent
// use. ReloadCredential and Apply replace the client that later sends
// use; sends in progress finish with the one they started with.
type Graph struct {
	opts    Options
	metrics *graphMetrics

	mu     sync.Mutex // serialises reloads
	cfg    *config.Graph
	files  credentialFiles // what the current client's credential was built from
	client atomic.Pointer[graphClient]
}

// graphClient is the Graph client of one configuration and one reading of
// the credential files. It never changes once built.
type graphClient struct {
	cred         azcore.TokenCredential
	tokens       *tokenCache // of cred: streamed requests and scopes other than Graph's
	scope        string
	adapter      *msgraphsdk.GraphRequestAdapter
	root         string       // Graph's root URL, as https://graph.microsoft.com
	baseURL      string       // root + "/v1.0"
	plain        *http.Client // streamed requests and upload sessions: no middleware
	timeout      time.Duration
	saveToSent   bool
	certExpiry   time.Time // NotAfter of the client certificate; zero without one
	secretExpiry time.Time // client_secret_expires; zero when not given
	log          *slog.Logger
}

// NewGraph builds the credential and the Graph client for cfg.
func NewGraph(cfg *config.Graph, opts Options) (*Graph, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &Graph{opts: opts}
	if err := g.Apply(cfg); err != nil {
		return nil, err
	}
	g.metrics = newGraphMetrics(opts.Metrics, func() *graphClient { return g.client.Load() })
	return g, nil
}

// Apply makes later sends use cfg, as on a reload of the configuration,
// with the credential files read afresh. On error the client in use stays.
func (g *Graph) Apply(cfg *config.Graph) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	files, err := readCredentialFiles(cfg)
	if err != nil {
		return err
	}
	return g.use(cfg, files)
}

// ReloadCredential re-reads the client secret or certificate files, so
// that an admin who fixes a refused credential needs to do nothing else.
// The credential (and its cached token) is rebuilt only when they changed.
func (g *Graph) ReloadCredential() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	files, err := readCredentialFiles(g.cfg)
	if err != nil {
		return err
	}
	if files == g.files {
		return nil
	}
	if err := g.use(g.cfg, files); err != nil {
		return err
	}
	g.opts.Logger.Info("graph credential files changed: using them from now on")
	return nil
}

// use builds a client for cfg and files and makes it current; g.mu is held.
func (g *Graph) use(cfg *config.Graph, files credentialFiles) error {
	c, err := newGraphClient(cfg, files, g.opts)
	if err != nil {
		return err
	}
	g.cfg, g.files = cfg, files
	g.client.Store(c)
	return nil
}

func newGraphClient(cfg *config.Graph, files credentialFiles, opts Options) (*graphClient, error) {
	authority, ok := authorities[cfg.Cloud]
	if !ok {
		authority = cloud.AzurePublic
	}
	customAuthority := cfg.AuthorityHost != ""
	if customAuthority {
		authority = cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.AuthorityHost}
	}
	// The endpoint only says where requests go; the scope, from the cloud
	// unless set, says which resource the token is for.
	graphRoot := config.GraphRoots[cfg.Cloud]
	if cfg.Endpoint != "" {
		graphRoot = strings.TrimSuffix(cfg.Endpoint, "/")
	}
	root, err := url.Parse(graphRoot)
	if err != nil || root.Host == "" {
		return nil, fmt.Errorf("graph endpoint %q is not a URL", graphRoot)
	}
	scope := cfg.Scope
	if scope == "" {
		return nil, errors.New("graph scope is not set")
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Keep a connection for every call that may be in flight: with Go's
	// default of two idle connections per host, the delivery workers would
	// pay a TLS handshake for most messages.
	transport.MaxIdleConnsPerHost = idleConnections
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
	cred, certExpiry, err := newCredential(cfg, files, clientOpts, customAuthority)
	if err != nil {
		return nil, err
	}

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

	return &graphClient{
		cred: cred, tokens: newTokenCache(cred), scope: scope, adapter: adapter, root: graphRoot, baseURL: baseURL, plain: plain,
		timeout: cfg.Timeout.D(), saveToSent: cfg.SaveToSent(), certExpiry: certExpiry,
		secretExpiry: cfg.ClientSecretExpires.Time, log: opts.Logger,
	}, nil
}

// credentialFiles is what the credential is built from, as read from its
// files (or the environment), comparable to see whether an admin changed it.
type credentialFiles struct {
	secret, certificate, certificatePassword string
}

func readCredentialFiles(cfg *config.Graph) (credentialFiles, error) {
	var f credentialFiles
	switch {
	case cfg.ManagedIdentity:
		return f, nil
	case cfg.CertificateFile != "":
		data, err := os.ReadFile(cfg.CertificateFile)
		if err != nil {
			return f, fmt.Errorf("certificate: %w", err)
		}
		f.certificate = string(data)
		if cfg.CertificatePasswordFile != "" {
			password, err := os.ReadFile(cfg.CertificatePasswordFile)
			if err != nil {
				return f, fmt.Errorf("certificate password: %w", err)
			}
			f.certificatePassword = strings.TrimRight(string(password), "\r\n")
		}
		return f, nil
	default:
		secret, err := cfg.ClientSecret()
		f.secret = secret
		return f, err
	}
}

// newCredential picks the credential the configuration names, and returns
// the expiry of its certificate when it has one.
func newCredential(cfg *config.Graph, files credentialFiles, opts azcore.ClientOptions, customAuthority bool) (azcore.TokenCredential, time.Time, error) {
	switch {
	case cfg.ManagedIdentity:
		if os.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
			cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
				ClientOptions: opts, ClientID: cfg.ClientID, TenantID: cfg.TenantID, DisableInstanceDiscovery: customAuthority,
			})
			return cred, time.Time{}, err
		}
		miOpts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if cfg.ClientID != "" {
			miOpts.ID = azidentity.ClientID(cfg.ClientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(miOpts)
		return cred, time.Time{}, err
	case cfg.CertificateFile != "":
		certs, key, err := parseClientCertificate(cfg, files)
		if err != nil {
			return nil, time.Time{}, err
		}
		cred, err := azidentity.NewClientCertificateCredential(cfg.TenantID, cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: customAuthority})
		// The first certificate is the one the key belongs to.
		return cred, certs[0].NotAfter, err
	default:
		cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, files.secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: customAuthority})
		return cred, time.Time{}, err
	}
}

// parseClientCertificate decodes certificate_file as read by
// readCredentialFiles; the first certificate is the one the key belongs to.
func parseClientCertificate(cfg *config.Graph, files credentialFiles) ([]*x509.Certificate, crypto.PrivateKey, error) {
	certs, key, err := azidentity.ParseCertificates([]byte(files.certificate), []byte(files.certificatePassword))
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", cfg.CertificateFile, err)
	}
	return certs, key, nil
}
