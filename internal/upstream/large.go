package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
)

// Limits of the draft path. Attachments from uploadThreshold up go through
// upload sessions in chunks of uploadChunk bytes: at most 4 MB and a
// multiple of 320 KiB, as Graph requires.
const (
	uploadThreshold = 3 << 20
	uploadChunk     = 10 * 320 << 10
	uploadTries     = 3                // per chunk, for transient failures
	maxUploadWait   = 30 * time.Second // cap on Retry-After between chunk tries
	cleanupTimeout  = 30 * time.Second
)

// sendLarge sends a message too large for one sendMail request: a draft
// carrying the body and the attachments that fit, the other attachments
// added one by one (large ones through upload sessions), then send.
//
// saveToSentItems cannot be honoured here: /send always keeps a copy in
// Sent Items, and that copy appears there asynchronously under a new ID,
// so it cannot be found and deleted reliably.
func (g *graphClient) sendLarge(ctx context.Context, mailbox string, msg *convert.Result) (Receipt, error) {
	draft, attachments := msg.Message, msg.Attachments
	if convert.MessageSize(&draft, nil) > smallMessageLimit {
		draft, attachments = bodyAsFile(draft, attachments)
	}
	// Sizes are exact: the empty list, then each attachment and its comma.
	var inline, rest []convert.Attachment
	size := convert.MessageSize(&draft, nil) + int64(len(`,"attachments":[]`)) - 1
	for _, a := range attachments {
		encoded := a.EncodedSize() + 1
		if a.Size >= uploadThreshold || size+encoded > smallMessageLimit {
			rest = append(rest, a)
			continue
		}
		inline = append(inline, a)
		size += encoded
	}
	var created struct {
		ID string `json:"id"`
	}
	write := func(w io.Writer) error { return convert.WriteMessage(w, &draft, inline) }
	if _, err := g.post(ctx, userPath(mailbox, "messages"), convert.MessageSize(&draft, inline), write, &created); err != nil {
		return Receipt{}, err
	}
	if created.ID == "" {
		return Receipt{}, &Error{Message: "Graph created a draft without an id", Kind: KindTransient}
	}
	receipt, err := g.completeDraft(ctx, mailbox, created.ID, rest)
	if err != nil {
		g.deleteDraft(mailbox, created.ID)
	}
	return receipt, err
}

// bodyAsFile moves a body that no Graph request could carry (its escaped
// JSON alone is over the limit) into an attachment, so that the text
// arrives rather than the whole message failing.
func bodyAsFile(m convert.Message, attachments []convert.Attachment) (convert.Message, []convert.Attachment) {
	name, contentType := "message.txt", "text/plain; charset=utf-8"
	if m.Body.ContentType == "html" {
		name, contentType = "message.html", "text/html; charset=utf-8"
	}
	text := m.Body.Content
	file := convert.Attachment{Name: name, ContentType: contentType, Size: int64(len(text)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(text)), nil }}
	m.Body = convert.ItemBody{ContentType: "text",
		Content: "The text of this message is too large for a message body; it is attached as " + name + "."}
	return m, append([]convert.Attachment{file}, attachments...)
}

func (g *graphClient) completeDraft(ctx context.Context, mailbox, id string, rest []convert.Attachment) (Receipt, error) {
	for _, a := range rest {
		if err := g.addAttachment(ctx, mailbox, id, a); err != nil {
			return Receipt{}, err
		}
	}
	return g.call(ctx, http.MethodPost, userPath(mailbox, "messages", id, "send"), "", nil, nil)
}

func (g *graphClient) addAttachment(ctx context.Context, mailbox, id string, a convert.Attachment) error {
	if size := a.EncodedSize(); a.Size < uploadThreshold && size <= requestLimit {
		_, err := g.post(ctx, userPath(mailbox, "messages", id, "attachments"), size, a.WriteJSON, nil)
		return err
	}
	item := map[string]any{"AttachmentItem": map[string]any{
		"attachmentType": "file", "name": a.Name, "size": a.Size, "contentType": a.ContentType,
		"isInline": a.IsInline, "contentId": a.ContentID,
	}}
	body, _ := json.Marshal(item)
	var session struct {
		UploadURL string `json:"uploadUrl"`
	}
	path := userPath(mailbox, "messages", id, "attachments", "createUploadSession")
	if _, err := g.call(ctx, http.MethodPost, path, "application/json", body, &session); err != nil {
		return err
	}
	if session.UploadURL == "" {
		return &Error{Message: "Graph created an upload session without an uploadUrl", Kind: KindTransient}
	}
	return g.upload(ctx, session.UploadURL, a)
}

// upload streams one attachment to its upload session, one chunk in memory
// at a time. After a transient failure it asks the session which bytes it
// still expects and resumes from there.
func (g *graphClient) upload(ctx context.Context, uploadURL string, a convert.Attachment) error {
	r, err := a.Open()
	if err != nil {
		return &Error{Message: "open attachment in the spool", Err: err, Kind: KindTransient}
	}
	defer r.Close()
	buf := make([]byte, uploadChunk)
	for offset := int64(0); offset < a.Size; {
		n := int(min(int64(uploadChunk), a.Size-offset))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return &Error{Message: "read attachment from the spool", Err: err, Kind: KindTransient}
		}
		// start is where the session wants the next byte, within buf.
		start := offset
		for try := 1; start < offset+int64(n); try++ {
			err := g.putChunk(ctx, uploadURL, buf[start-offset:n], start, a.Size)
			if err == nil {
				break
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindTransient || try >= uploadTries {
				return err
			}
			if err := sleep(ctx, min(max(e.RetryAfter, time.Second), maxUploadWait)); err != nil {
				return err
			}
			next, err := g.nextExpected(ctx, uploadURL)
			if err != nil {
				return err
			}
			if next < offset || next > offset+int64(n) {
				return &Error{Message: fmt.Sprintf("upload session expects byte %d, outside the chunk at %d", next, offset), Kind: KindTransient}
			}
			start = next
		}
		offset += int64(n)
	}
	return nil
}

// putChunk sends bytes [start, start+len(data)) of total. Upload URLs are
// pre-authenticated: an Authorization header would be refused.
func (g *graphClient) putChunk(ctx context.Context, uploadURL string, data []byte, start, total int64) error {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	body := &chunkBody{Reader: bytes.NewReader(data), closed: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, uploadURL, body)
	if err != nil {
		return &Error{Kind: KindMessage, Message: "build upload request", Err: err}
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+int64(len(data))-1, total))
	_, err = g.uploadRequest(req)
	// The transport may still be reading data after the answer came (a
	// server may answer before it has read the whole body); the caller
	// reuses data for the next chunk only once the transport let go of it.
	<-body.closed
	return err
}

// chunkBody is an upload request's body that tells when the transport
// has closed it, which it always does, on success and on error alike.
type chunkBody struct {
	*bytes.Reader
	closed chan struct{}
	once   sync.Once
}

func (b *chunkBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// nextExpected asks an upload session for the first byte it still needs.
func (g *graphClient) nextExpected(ctx context.Context, uploadURL string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uploadURL, nil)
	if err != nil {
		return 0, &Error{Kind: KindMessage, Message: "build upload status request", Err: err}
	}
	body, err := g.uploadRequest(req)
	if err != nil {
		return 0, err
	}
	var status struct {
		NextExpectedRanges []string `json:"nextExpectedRanges"`
	}
	if err := json.Unmarshal(body, &status); err != nil || len(status.NextExpectedRanges) == 0 {
		return 0, &Error{Message: "upload session status without nextExpectedRanges", Err: err, Kind: KindTransient}
	}
	first, _, _ := strings.Cut(status.NextExpectedRanges[0], "-")
	next, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, &Error{Message: "bad nextExpectedRanges " + status.NextExpectedRanges[0], Kind: KindTransient}
	}
	return next, nil
}

// uploadRequest runs a request on an upload URL and classifies failures.
func (g *graphClient) uploadRequest(req *http.Request) ([]byte, error) {
	resp, err := g.plain.Do(req)
	if err != nil {
		return nil, classify(req.Context(), err, nil)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, classify(req.Context(), err, nil)
	}
	if resp.StatusCode >= 400 {
		rec := &recordedResponse{status: resp.StatusCode, header: resp.Header}
		e := classify(req.Context(), fmt.Errorf("upload: %s", graphErrorText(body)), rec)
		// An upload URL carries its own authorisation: a refusal there is
		// about this upload session, not the gateway's credential.
		if e.Kind == KindCredential {
			e.Kind, e.Scope, e.Explanation = KindTransient, ScopeMessage, ""
		}
		return nil, e
	}
	return body, nil
}

// graphErrorText extracts code and message from a Graph error body.
func graphErrorText(body []byte) string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code + ": " + e.Error.Message
	}
	return strings.TrimSpace(string(body[:min(len(body), 200)]))
}

// deleteDraft removes a draft that will not be sent, so that retries do not
// pile drafts up in the mailbox. Best effort, even after ctx ended.
func (g *graphClient) deleteDraft(mailbox, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := g.call(ctx, http.MethodDelete, userPath(mailbox, "messages", id), "", nil, nil); err != nil {
		g.log.Warn("cannot delete draft of a failed message", "mailbox", mailbox, "error", err)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return classify(ctx, ctx.Err(), nil)
	}
}
