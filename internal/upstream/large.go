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
	draft := msg.Message
	var rest []convert.Attachment
	size := messageSize(&msg.Message)
	for _, a := range msg.Attachments {
		encoded := encodedSize(a)
		if a.Size >= uploadThreshold || size+encoded > smallMessageLimit {
			rest = append(rest, a)
			continue
		}
		fa, err := loadAttachment(a)
		if err != nil {
			return Receipt{}, err
		}
		draft.Attachments = append(draft.Attachments, fa)
		size += encoded
	}
	body, err := json.Marshal(draft)
	if err != nil {
		return Receipt{}, &Error{Kind: KindMessage, Message: "encode draft", Err: err}
	}
	var created struct {
		ID string `json:"id"`
	}
	if _, err := g.call(ctx, http.MethodPost, userPath(mailbox, "messages"), "application/json", body, &created); err != nil {
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

func (g *graphClient) completeDraft(ctx context.Context, mailbox, id string, rest []convert.Attachment) (Receipt, error) {
	for _, a := range rest {
		if err := g.addAttachment(ctx, mailbox, id, a); err != nil {
			return Receipt{}, err
		}
	}
	return g.call(ctx, http.MethodPost, userPath(mailbox, "messages", id, "send"), "", nil, nil)
}

func (g *graphClient) addAttachment(ctx context.Context, mailbox, id string, a convert.Attachment) error {
	if a.Size < uploadThreshold {
		fa, err := loadAttachment(a)
		if err != nil {
			return err
		}
		body, err := json.Marshal(fa)
		if err != nil {
			return &Error{Kind: KindMessage, Message: "encode attachment", Err: err}
		}
		_, err = g.call(ctx, http.MethodPost, userPath(mailbox, "messages", id, "attachments"), "application/json", body, nil)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, uploadURL, bytes.NewReader(data))
	if err != nil {
		return &Error{Kind: KindMessage, Message: "build upload request", Err: err}
	}
	req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+int64(len(data))-1, total))
	_, err = g.uploadRequest(req)
	return err
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
	resp, err := g.uploads.Do(req)
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
		return nil, classify(req.Context(), fmt.Errorf("upload: %s", graphErrorText(body)), rec)
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

func loadAttachment(a convert.Attachment) (convert.FileAttachment, error) {
	fa, err := a.Load()
	if err != nil {
		return fa, &Error{Message: "read attachment from the spool", Err: err, Kind: KindTransient}
	}
	return fa, nil
}

// encodedSize is an attachment's share of a JSON request: base64 plus names.
func encodedSize(a convert.Attachment) int64 {
	return (a.Size+2)/3*4 + int64(len(a.Name)+len(a.ContentType)+len(a.ContentID)) + 200
}

// requestSize estimates the sendMail request for msg without reading its
// attachments.
func requestSize(msg *convert.Result) int64 {
	n := messageSize(&msg.Message)
	for _, a := range msg.Attachments {
		n += encodedSize(a)
	}
	return n
}

func messageSize(m *convert.Message) int64 {
	data, _ := json.Marshal(m)
	return int64(len(data))
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
