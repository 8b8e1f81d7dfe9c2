package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/smtpgw/smtpgw/internal/convert"
)

// streamBuffer is how much of a streamed request body is gathered before
// it goes to the connection; a smaller body is written whole first.
const streamBuffer = 64 << 10

// post sends a JSON request whose body write produces as it is sent, from
// the spool through the encoder: a body larger than streamBuffer is never
// held whole in memory (see requestBody). size is
// the exact length write produces. When out is not nil the JSON response is
// decoded into it. The SDK's adapter cannot do this (it takes the body as
// one []byte), so the request goes out on the plain client with a token
// from the same credential.
func (g *graphClient) post(ctx context.Context, path string, size int64, write func(io.Writer) error, out any) (Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	// From the cache in front of the credential: asking the credential
	// itself costs a good part of a small message's CPU, even when its own
	// cache has the token.
	token, err := g.tokens.token(ctx, g.scope)
	if err != nil {
		return Receipt{}, err
	}
	reqBody, written := requestBody(size, write)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.baseURL+path, reqBody)
	if err != nil {
		reqBody.Close()
		<-written
		return Receipt{}, &Error{Kind: KindMessage, Message: "build request", Err: err}
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	// Graph echoes it and logs it: support cases quote it.
	sent := &recordedResponse{clientRequestID: newClientRequestID()}
	req.Header.Set("client-request-id", sent.clientRequestID)
	resp, err := g.plain.Do(req)
	reqBody.Close() // Graph may answer before reading it all
	writeErr := <-written
	var source *convert.SourceError
	if errors.As(writeErr, &source) {
		if resp != nil {
			resp.Body.Close()
		}
		return Receipt{}, &Error{Message: "read attachment from the spool", Err: writeErr, Kind: KindTransient}
	}
	if err != nil {
		return Receipt{}, classify(ctx, err, sent)
	}
	defer resp.Body.Close()
	receipt := Receipt{Status: resp.StatusCode, RequestID: resp.Header.Get("request-id")}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return receipt, classify(ctx, err, sent)
	}
	if resp.StatusCode >= 400 {
		sent.status, sent.header = resp.StatusCode, resp.Header
		return receipt, classify(ctx, graphError(resp.StatusCode, body), sent)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return receipt, &Error{Status: resp.StatusCode, RequestID: receipt.RequestID, ClientRequestID: sent.clientRequestID, Message: "unexpected Graph response", Err: err, Kind: KindTransient}
		}
	}
	return receipt, nil
}

// requestBody returns the body that write produces, of size bytes, and a
// channel giving write's error once it has returned. A body no larger than
// streamBuffer is written whole first, into a buffer of its size: the
// stream's buffer would hold all of it anyway, and from memory it needs
// neither a goroutine and a pipe nor the transport's own copy buffer. A
// larger one streams through a pipe as the request is sent. Either way a
// failed write makes the request fail: the body falls short of its length.
func requestBody(size int64, write func(io.Writer) error) (io.ReadCloser, <-chan error) {
	written := make(chan error, 1)
	if size <= streamBuffer {
		buf := bytes.NewBuffer(make([]byte, 0, size))
		written <- write(buf)
		return io.NopCloser(bytes.NewReader(buf.Bytes())), written
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, streamBuffer)
		err := write(bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err) // nil: the reader sees the end of the body
		written <- err
	}()
	return pr, written
}

// graphError turns a Graph error body into the error the SDK would have
// returned for it, so that classify reads it the same way; a body that is
// not Graph's JSON (a proxy's HTML page) becomes plain text.
func graphError(status int, body []byte) error {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	main := odataerrors.NewMainError()
	main.SetCode(&e.Error.Code)
	main.SetMessage(&e.Error.Message)
	odata := odataerrors.NewODataError()
	odata.SetErrorEscaped(main)
	odata.ResponseStatusCode = status
	return odata
}
