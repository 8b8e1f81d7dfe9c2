package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	abs "github.com/microsoft/kiota-abstractions-go"
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

// Way is Graph at the root URL of the configuration in use.
func (g *Graph) Way() Way { return Way{Via: config.SendViaGraph, Address: g.client.Load().root} }

// Send delivers msg as env.Mailbox: MIME for signed or encrypted mail,
// sendMail JSON for what fits one request, else draft plus uploads.
func (g *Graph) Send(ctx context.Context, env *envelope.Envelope, m Message) (Receipt, error) {
	msg, err := m.Converted()
	if err != nil {
		return Receipt{}, err
	}
	receipt, err := g.client.Load().send(ctx, env, msg)
	g.metrics.countTokenFailure(err)
	return receipt, err
}

func (g *graphClient) send(ctx context.Context, env *envelope.Envelope, msg *convert.Result) (Receipt, error) {
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
func (g *graphClient) sendMIME(ctx context.Context, mailbox string, open convert.Opener) (Receipt, error) {
	r, err := open()
	if err != nil {
		return Receipt{}, &Error{Message: "open message in the spool", Err: err, Kind: KindTransient}
	}
	defer r.Close()
	var body bytes.Buffer
	enc := base64.NewEncoder(base64.StdEncoding, &body)
	_, err = io.Copy(enc, io.LimitReader(r, requestLimit))
	enc.Close()
	if err != nil {
		return Receipt{}, &Error{Message: "read message from the spool", Err: err, Kind: KindTransient}
	}
	if body.Len() > requestLimit {
		return Receipt{}, &Error{Kind: KindMessage, Status: http.StatusRequestEntityTooLarge,
			Message:     "signed or encrypted message too large: Graph accepts MIME up to about 3 MB",
			Explanation: "The signed or encrypted message is too large: Microsoft 365 accepts such messages up to about 3 MB.", BounceStatus: "5.3.4"}
	}
	return g.call(ctx, http.MethodPost, userPath(mailbox, "sendMail"), "text/plain", body.Bytes(), nil)
}

// call sends one Graph request through the SDK's adapter (which adds the
// Authorization header) and classifies any failure. When out is not nil the
// JSON response is decoded into it.
func (g *graphClient) call(ctx context.Context, method, path, contentType string, body []byte, out any) (Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp := &recordedResponse{}
	ctx = withRecorder(ctx, resp)

	u, err := url.Parse(g.baseURL + path)
	if err != nil {
		return Receipt{}, &Error{Kind: KindMessage, Message: "build request URL", Err: err}
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
			return receipt, &Error{Status: resp.status, RequestID: receipt.RequestID, ClientRequestID: resp.clientRequestID, Message: "unexpected Graph response", Err: err, Kind: KindTransient}
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
