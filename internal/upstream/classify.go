package upstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	khttp "github.com/microsoft/kiota-http-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// recordedResponse is what the response recorder saw of the last response
// to one request: the SDK turns some error bodies (an HTML 413) into plain
// errors that have lost the status, and never exposes request-id.
type recordedResponse struct {
	status          int
	header          http.Header
	clientRequestID string // the request's, which Graph echoes
}

type recorderKey struct{}

func withRecorder(ctx context.Context, r *recordedResponse) context.Context {
	return context.WithValue(ctx, recorderKey{}, r)
}

// responseRecorder is SDK middleware filling the request's recordedResponse.
type responseRecorder struct{}

func newResponseRecorder() khttp.Middleware { return responseRecorder{} }

func (responseRecorder) Intercept(p khttp.Pipeline, index int, req *http.Request) (*http.Response, error) {
	resp, err := p.Next(req, index)
	if rec, ok := req.Context().Value(recorderKey{}).(*recordedResponse); ok {
		rec.clientRequestID = req.Header.Get("client-request-id")
		if resp != nil {
			rec.status, rec.header = resp.StatusCode, resp.Header.Clone()
		}
	}
	return resp, err
}

// newClientRequestID makes a client-request-id for a request sent without
// the SDK, which adds one to its own: a random GUID, as Graph expects.
func newClientRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// classify turns any failure of a Graph or Entra ID call into an *Error and
// decides, here and only here, what it means: the message's fault, worth
// another try, or the credential's.
func classify(ctx context.Context, err error, resp *recordedResponse) *Error {
	e := &Error{Err: err}
	if resp != nil {
		e.ClientRequestID = resp.clientRequestID
		if resp.status >= 400 {
			e.Status = resp.status
			e.RequestID = resp.header.Get("request-id")
			e.RetryAfter = retryAfter(resp.header.Get("Retry-After"), time.Now())
		}
	}
	var odata *odataerrors.ODataError
	var authErr *azidentity.AuthenticationFailedError
	var netErr net.Error
	switch {
	case errors.As(err, &odata):
		if e.Status == 0 {
			e.Status = odata.ResponseStatusCode
		}
		// ODataError.Error() can panic on a body without a message: read
		// it only through the getters.
		if main := odata.GetErrorEscaped(); main != nil {
			if c := main.GetCode(); c != nil {
				e.Code = *c
			}
			if m := main.GetMessage(); m != nil {
				e.Message = *m
			}
		}
	case errors.As(err, &authErr):
		classifyTokenFailure(e, authErr)
		return e
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr):
		e.Kind, e.Message = KindTransient, "no answer from Graph in time"
		return e
	case errors.Is(err, context.Canceled):
		e.Kind, e.Message = KindTransient, "cancelled"
		return e
	}
	if e.Message == "" && e.Status != 0 {
		e.Message = http.StatusText(e.Status)
	}
	classifyGraphAnswer(e)
	if ctx.Err() != nil {
		e.Kind, e.Scope = KindTransient, ScopeMessage
	}
	return e
}

// GraphAnswer is the Error that Send returns for Graph's answer with this
// status and error code, for fake Targets in other packages' tests.
func GraphAnswer(status int, code string, retryAfter time.Duration) *Error {
	e := &Error{Status: status, Code: code, Message: "answer from a fake", RequestID: "req-fake", RetryAfter: retryAfter}
	classifyGraphAnswer(e)
	return e
}

// classifyGraphAnswer sorts Graph's answer by its status and error code.
func classifyGraphAnswer(e *Error) {
	e.Kind, e.Scope = KindMessage, ScopeMessage
	switch {
	case e.Status == 0:
		// No response at all: connection refused, reset, DNS, TLS.
		e.Kind = KindTransient
		if e.Message == "" {
			e.Message = "cannot reach Graph"
		}
	case e.Status == http.StatusTooManyRequests:
		// Graph throttles per app and mailbox: the mailbox's other
		// messages would only be throttled too.
		e.Kind, e.Scope = KindTransient, ScopeMailbox
	case e.Status == http.StatusRequestTimeout, e.Status >= 500:
		e.Kind = KindTransient
	case e.Status == http.StatusUnauthorized:
		e.Kind, e.Scope = KindCredential, ScopeTarget
		e.Explanation = "Microsoft Graph refused the gateway's access token. Check that tenant_id, cloud and scope in [graph] name this tenant's Microsoft Graph."
	case e.Status == http.StatusForbidden && strings.EqualFold(e.Code, "ErrorSendAsDenied"):
		e.Explanation = "The mailbox may not send with the From address of the message. Give it Send As or Send on Behalf rights for that address, or send from the mailbox's own address."
		e.BounceStatus = "5.7.1"
	case e.Status == http.StatusForbidden:
		// ErrorAccessDenied: the mailbox is outside the application
		// access policy or RBAC scope. Other mailboxes may be inside.
		e.Kind, e.Scope = KindCredential, ScopeMailbox
		e.Explanation = "The app registration may not send as this mailbox: the mailbox is outside its application access policy or RBAC for Applications scope, or the app lacks the Mail.Send permission. " +
			"Check with Test-ApplicationAccessPolicy -Identity <mailbox> -AppId <client_id>, or Test-ServicePrincipalAuthorization -Identity <client_id> -Resource <mailbox>, in Exchange Online PowerShell; policy changes can take an hour to apply."
	case e.Status == http.StatusNotFound:
		e.Explanation = "The mailbox was not found in Microsoft 365, or it has no Exchange Online mailbox. Check the mailbox the gateway maps this sender to."
		e.BounceStatus = "5.1.0"
	case e.Status == http.StatusRequestEntityTooLarge:
		e.Explanation, e.BounceStatus = "The message is too large for Microsoft 365.", "5.3.4"
	case e.Status == http.StatusBadRequest:
		e.Explanation, e.BounceStatus = "Microsoft 365 refused the message as malformed.", "5.6.0"
	default:
		e.Explanation = "Microsoft 365 refused the message."
	}
}

// classifyTokenFailure reads Entra ID's refusal of a token request. A
// refusal is the admin's to fix and holds every message; Entra ID being
// unreachable, throttling or failing is worth another try.
func classifyTokenFailure(e *Error, authErr *azidentity.AuthenticationFailedError) {
	e.Message = "Entra ID refused the token request"
	if authErr.RawResponse != nil {
		e.Status = authErr.RawResponse.StatusCode
		readEntraError(e, authErr.RawResponse)
	}
	classifyEntraAnswer(e)
}

// EntraAnswer is the Error that Token returns for Entra ID's refusal of a
// token request with this status, OAuth error and AADSTS code, for fake
// token sources in other packages' tests.
func EntraAnswer(status int, code, aadsts string) *Error {
	e := &Error{Status: status, Code: code, AADSTS: aadsts, Message: aadsts + ": answer from a fake"}
	classifyEntraAnswer(e)
	return e
}

// classifyEntraAnswer sorts Entra ID's answer to a token request by its
// status and error code.
func classifyEntraAnswer(e *Error) {
	e.token = true
	if e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status >= 500 || e.Code == "temporarily_unavailable" {
		e.Kind = KindTransient
		if e.Status == 0 {
			e.Message = "cannot reach Entra ID"
		}
		return
	}
	e.Kind, e.Scope = KindCredential, ScopeTarget
	e.Explanation = entraExplanation(e.AADSTS, e.Code)
}

// readEntraError reads Entra ID's OAuth error body: error, error_description
// ("AADSTS7000215: …"), error_codes, trace_id and correlation_id, which
// Entra ID's sign-in logs know as the request ID and the client's request ID.
func readEntraError(e *Error, resp *http.Response) {
	body, err := runtime.Payload(resp)
	if err != nil {
		return
	}
	var answer struct {
		Error         string `json:"error"`
		Description   string `json:"error_description"`
		Codes         []int  `json:"error_codes"`
		TraceID       string `json:"trace_id"`
		CorrelationID string `json:"correlation_id"`
	}
	if json.Unmarshal(body, &answer) != nil {
		return
	}
	e.Code, e.RequestID, e.ClientRequestID = answer.Error, answer.TraceID, answer.CorrelationID
	if d := entraDescription(answer.Description); d != "" {
		e.Message = d
	}
	if len(answer.Codes) > 0 && answer.Codes[0] != 0 {
		e.AADSTS = "AADSTS" + strconv.Itoa(answer.Codes[0])
	} else {
		e.AADSTS = aadstsRE.FindString(answer.Description)
	}
}

var aadstsRE = regexp.MustCompile(`AADSTS\d+`)

// entraDescription keeps the first line of a description: Entra ID
// follows it with trace and correlation IDs and a timestamp.
func entraDescription(d string) string {
	d, _, _ = strings.Cut(d, "\n")
	d, _, _ = strings.Cut(d, " Trace ID:")
	return strings.TrimSpace(d)
}

// entraExplanations are what admins do about the refusals they meet.
var entraExplanations = map[string]string{
	"AADSTS7000215": "Entra ID refused the client secret: it is wrong, or it is the secret's ID rather than its value. Create a new client secret for the app registration (Certificates & secrets) and write its value to client_secret_file; the gateway reads the file again before its next try.",
	"AADSTS7000222": "The client secret has expired. Create a new client secret for the app registration (Certificates & secrets) and write its value to client_secret_file; the gateway reads the file again before its next try.",
	"AADSTS700016":  "Entra ID knows no application with this client_id in this tenant. Check client_id and tenant_id against the app registration's overview page.",
	"AADSTS700027":  "Entra ID did not accept the client certificate. Upload the certificate (its public part) to the app registration, or renew it and write the new one to certificate_file; the gateway reads the file again before its next try.",
	"AADSTS90002":   "Entra ID knows no such tenant. Check tenant_id (the directory ID or a verified domain) and cloud.",
	"AADSTS7000112": "The application is disabled in this tenant. An admin can enable it under Enterprise applications, Properties, Enabled for users to sign in.",
	"AADSTS53003":   "A Conditional Access policy blocks the app's sign-in. Exclude the app from the policy, or allow the address this gateway connects from.",
}

func entraExplanation(aadsts, code string) string {
	if s, ok := entraExplanations[aadsts]; ok {
		return s
	}
	what := "the gateway's credential"
	if code != "" {
		what += " (" + code + ")"
	}
	return "Entra ID refused " + what + ". Check tenant_id, client_id and the client secret or certificate in [graph]; the gateway reads the secret and certificate files again before its next try."
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if secs, err := strconv.Atoi(value); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(value); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}
