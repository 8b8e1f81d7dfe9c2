package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	khttp "github.com/microsoft/kiota-http-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// recordedResponse is what the response recorder saw of the last response
// to one request: the SDK turns some error bodies (an HTML 413) into plain
// errors that have lost the status, and never exposes request-id.
type recordedResponse struct {
	status int
	header http.Header
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
	if rec, ok := req.Context().Value(recorderKey{}).(*recordedResponse); ok && resp != nil {
		rec.status, rec.header = resp.StatusCode, resp.Header.Clone()
	}
	return resp, err
}

// classify turns any failure of a Graph or Entra ID call into an *Error and
// decides, here and only here, whether trying again later may help.
func classify(ctx context.Context, err error, resp *recordedResponse) *Error {
	e := &Error{Err: err}
	if resp != nil && resp.status >= 400 {
		e.Status = resp.status
		e.RequestID = resp.header.Get("request-id")
		e.RetryAfter = retryAfter(resp.header.Get("Retry-After"), time.Now())
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
		e.Message = "Entra ID refused the token request"
		if authErr.RawResponse != nil {
			e.Status = authErr.RawResponse.StatusCode
		}
		e.Code = entraErrorCode(authErr.Error())
		// A refused credential is the admin's to fix; Entra ID being
		// down is not.
		e.Temporary = e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status >= 500
		return e
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr):
		e.Message = "no answer from Graph in time"
		e.Temporary = true
		return e
	case errors.Is(err, context.Canceled):
		e.Message = "cancelled"
		e.Temporary = true
		return e
	}
	if e.Message == "" && e.Status != 0 {
		e.Message = http.StatusText(e.Status)
	}
	switch {
	case e.Status == 0:
		// No response at all: connection refused, reset, DNS, TLS.
		e.Temporary = true
		if e.Message == "" {
			e.Message = "cannot reach Graph"
		}
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout, e.Status >= 500:
		e.Temporary = true
	}
	if ctx.Err() != nil {
		e.Temporary = true
	}
	return e
}

// entraErrorCode finds the OAuth error code (invalid_client, …) in the
// text azidentity gives, for the logs and dead letters.
func entraErrorCode(text string) string {
	for _, code := range []string{"invalid_client", "unauthorized_client", "invalid_request", "invalid_scope", "invalid_grant"} {
		if strings.Contains(text, code) {
			return code
		}
	}
	return ""
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
