package graphtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
)

// Graph's limits that the fake enforces as Graph does.
const (
	requestLimit   = 4 << 20   // bytes of one request body
	chunkLimit     = 4 << 20   // bytes of one upload PUT
	chunkMultiple  = 320 << 10 // every upload chunk but the last
	maxXHeaders    = 5
	uploadLimit    = 150 << 20 // bytes of one attachment through an upload session
	uploadLifetime = 2 * time.Hour
)

type draft struct {
	mailbox string
	message convert.Message
}

type upload struct {
	draftID string
	item    convert.FileAttachment // ContentBytes grows as chunks arrive, into its final capacity
	size    int64
}

func (s *Server) routeGraph(mux *http.ServeMux) {
	mux.Handle("POST /v1.0/users/{m}/sendMail", s.graph(RouteSendMail, s.sendMail))
	mux.Handle("POST /v1.0/users/{m}/messages", s.graph(RouteCreateDraft, s.createDraft))
	mux.Handle("POST /v1.0/users/{m}/messages/{id}/attachments", s.graph(RouteAddAttachment, s.addAttachment))
	mux.Handle("POST /v1.0/users/{m}/messages/{id}/attachments/createUploadSession", s.graph(RouteCreateUploadSession, s.createUploadSession))
	mux.Handle("POST /v1.0/users/{m}/messages/{id}/send", s.graph(RouteSend, s.send))
	mux.Handle("DELETE /v1.0/users/{m}/messages/{id}", s.graph(RouteDeleteMessage, s.deleteMessage))
	mux.HandleFunc("PUT /upload/{token}", s.putChunk)
	mux.HandleFunc("GET /upload/{token}", s.uploadStatus)
}

// graph wraps a Graph handler with what every Graph request goes through:
// request IDs, the bearer token check, refusal of gzip bodies, in-flight
// counting per mailbox, latency and scripted failures.
func (s *Server) graph(route string, h func(http.ResponseWriter, *http.Request, []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", newGUID())
		w.Header().Set("client-request-id", r.Header.Get("client-request-id"))
		mailbox := strings.ToLower(r.PathValue("m"))
		s.mu.Lock()
		s.inFlight[mailbox]++
		s.peak[mailbox] = max(s.peak[mailbox], s.inFlight[mailbox])
		latency := s.latency
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight[mailbox]--
			s.mu.Unlock()
		}()
		if latency > 0 && !s.wait(r, latency) {
			return
		}
		if f, ok := s.takeFailure(route); ok {
			s.fail(w, r, route, f)
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		audience, known := s.tokens[token]
		s.mu.Unlock()
		switch {
		case !ok || !known:
			graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or invalid.")
			return
		case audience != Audience:
			graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Invalid audience.")
			return
		}
		if r.Header.Get("Content-Encoding") != "" {
			graphError(w, http.StatusBadRequest, "ErrorInvalidRequest", "Compressed request bodies are not supported.")
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, requestLimit+1))
		if err != nil {
			return
		}
		if len(body) > requestLimit {
			s.fail(w, r, route, Failure{Status: http.StatusRequestEntityTooLarge, HTML: true})
			return
		}
		h(w, r, body)
	})
}

func (s *Server) sendMail(w http.ResponseWriter, r *http.Request, body []byte) {
	if s.opts.counting {
		s.mu.Lock()
		s.accepted++
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	sent := Sent{Mailbox: r.PathValue("m"), RequestID: w.Header().Get("request-id")}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		mime, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(body)))
		if err != nil {
			graphError(w, http.StatusBadRequest, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
			return
		}
		sent.Kind, sent.MIME, sent.SaveToSentItems = "mime", mime, true
	} else {
		var req convert.SendMailRequest
		if !decodeMessage(w, body, &req) || !validMessage(w, &req.Message) {
			return
		}
		sent.Kind, sent.Message, sent.SaveToSentItems = "json", req.Message, req.SaveToSentItems
	}
	s.record(sent)
	w.WriteHeader(http.StatusAccepted)
}

// createDraft answers, as Graph does, with the message it stored: the
// properties sent plus its id.
func (s *Server) createDraft(w http.ResponseWriter, r *http.Request, body []byte) {
	var m convert.Message
	var echo map[string]json.RawMessage
	if !decodeMessage(w, body, &m) || !decodeMessage(w, body, &echo) || !validMessage(w, &m) {
		return
	}
	id := "AAMk" + randomHex(12)
	s.mu.Lock()
	s.drafts[id] = &draft{mailbox: r.PathValue("m"), message: m}
	s.mu.Unlock()
	delete(echo, "attachments") // Graph does not return them inline either
	echo["id"], _ = json.Marshal(id)
	echo["isDraft"] = json.RawMessage("true")
	writeJSON(w, http.StatusCreated, echo)
}

func (s *Server) addAttachment(w http.ResponseWriter, r *http.Request, body []byte) {
	var a convert.FileAttachment
	if !decodeMessage(w, body, &a) {
		return
	}
	s.mu.Lock()
	d := s.drafts[r.PathValue("id")]
	if d != nil {
		d.message.Attachments = append(d.message.Attachments, a)
	}
	s.mu.Unlock()
	if d == nil {
		graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": randomHex(8), "name": a.Name})
}

func (s *Server) createUploadSession(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		AttachmentItem struct {
			Name        string `json:"name"`
			Size        int64  `json:"size"`
			ContentType string `json:"contentType"`
			IsInline    bool   `json:"isInline"`
			ContentID   string `json:"contentId"`
		}
	}
	if !decodeMessage(w, body, &req) {
		return
	}
	item := req.AttachmentItem
	if item.Size <= 0 || item.Name == "" {
		graphError(w, http.StatusBadRequest, "ErrorInvalidRequest", "AttachmentItem needs a name and a size.")
		return
	}
	if item.Size > uploadLimit {
		graphError(w, http.StatusBadRequest, "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize", "Attachment size must be at most 150 MB.")
		return
	}
	token := randomHex(16)
	s.mu.Lock()
	_, ok := s.drafts[r.PathValue("id")]
	if ok {
		s.uploads[token] = &upload{draftID: r.PathValue("id"), size: item.Size,
			item: convert.FileAttachment{ODataType: convert.FileAttachmentType, Name: item.Name,
				ContentType: item.ContentType, IsInline: item.IsInline, ContentID: item.ContentID, ContentBytes: make([]byte, 0, item.Size)}}
	}
	s.mu.Unlock()
	if !ok {
		graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"uploadUrl": origin(r) + "/upload/" + token, "nextExpectedRanges": []string{"0-"},
		"expirationDateTime": time.Now().Add(uploadLifetime).UTC().Format(time.RFC3339),
	})
}

// putChunk receives one chunk of an upload session. Upload URLs are
// pre-authenticated, and Graph refuses requests that carry a token.
func (s *Server) putChunk(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.takeFailure(RouteUpload); ok {
		s.fail(w, r, RouteUpload, f)
		return
	}
	if r.Header.Get("Authorization") != "" {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Upload URLs must not carry an Authorization header.")
		return
	}
	if r.ContentLength < 0 {
		graphError(w, http.StatusLengthRequired, "LengthRequired", "Upload chunks need a Content-Length.")
		return
	}
	if r.ContentLength > chunkLimit {
		graphError(w, http.StatusRequestEntityTooLarge, "InvalidChunkSize", "A chunk must be at most 4 MiB.")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var first, last, total int64
	if _, err := fmt.Sscanf(r.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &total); err != nil || last-first+1 != int64(len(body)) {
		graphError(w, http.StatusBadRequest, "InvalidContentRange", "Content-Range does not match the body.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.uploads[r.PathValue("token")]
	switch {
	case u == nil:
		graphError(w, http.StatusNotFound, "ItemNotFound", "Upload session not found.")
	case last+1 < total && len(body)%chunkMultiple != 0:
		graphError(w, http.StatusBadRequest, "InvalidChunkSize", "Every chunk but the last must be a multiple of 320 KiB.")
	case total != u.size || first != int64(len(u.item.ContentBytes)):
		writeJSON(w, http.StatusRequestedRangeNotSatisfiable, map[string]any{"nextExpectedRanges": []string{fmt.Sprintf("%d-", len(u.item.ContentBytes))}})
	default:
		u.item.ContentBytes = append(u.item.ContentBytes, body...)
		if last+1 < total {
			writeJSON(w, http.StatusOK, map[string]any{"nextExpectedRanges": []string{fmt.Sprintf("%d-", last+1)},
				"expirationDateTime": time.Now().Add(uploadLifetime).UTC().Format(time.RFC3339)})
			return
		}
		if d := s.drafts[u.draftID]; d != nil {
			d.message.Attachments = append(d.message.Attachments, u.item)
		}
		delete(s.uploads, r.PathValue("token"))
		w.WriteHeader(http.StatusCreated)
	}
}

// uploadStatus tells where an interrupted upload resumes.
func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	u := s.uploads[r.PathValue("token")]
	var next int
	if u != nil {
		next = len(u.item.ContentBytes)
	}
	s.mu.Unlock()
	if u == nil {
		graphError(w, http.StatusNotFound, "ItemNotFound", "Upload session not found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"nextExpectedRanges": []string{fmt.Sprintf("%d-", next)},
		"expirationDateTime": time.Now().Add(uploadLifetime).UTC().Format(time.RFC3339)})
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	d := s.drafts[r.PathValue("id")]
	delete(s.drafts, r.PathValue("id"))
	s.mu.Unlock()
	if d == nil {
		graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	s.record(Sent{Mailbox: d.mailbox, Kind: "draft", Message: d.message, SaveToSentItems: true, RequestID: w.Header().Get("request-id")})
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request, _ []byte) {
	id := r.PathValue("id")
	s.mu.Lock()
	_, ok := s.drafts[id]
	delete(s.drafts, id)
	if ok {
		s.deleted = append(s.deleted, id)
	}
	s.mu.Unlock()
	if !ok {
		graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) record(sent Sent) {
	s.mu.Lock()
	s.sent = append(s.sent, sent)
	s.accepted++
	s.mu.Unlock()
}

func decodeMessage(w http.ResponseWriter, body []byte, v any) bool {
	if err := json.Unmarshal(body, v); err != nil {
		graphError(w, http.StatusBadRequest, "ErrorInvalidRequest", "Cannot read the request body: "+err.Error())
		return false
	}
	return true
}

// validMessage applies the checks Graph makes that the gateway must respect.
func validMessage(w http.ResponseWriter, m *convert.Message) bool {
	if len(m.InternetMessageHeaders) > maxXHeaders {
		graphError(w, http.StatusBadRequest, "InvalidInternetMessageHeaderCollection", "Maximum number of headers in one message should be less than or equal to 5.")
		return false
	}
	for _, h := range m.InternetMessageHeaders {
		if !strings.HasPrefix(strings.ToLower(h.Name), "x-") {
			graphError(w, http.StatusBadRequest, "InvalidInternetMessageHeader", "The internet message header name '"+h.Name+"' should start with 'x-' or 'X-'.")
			return false
		}
	}
	if len(m.ToRecipients)+len(m.CcRecipients)+len(m.BccRecipients) == 0 {
		graphError(w, http.StatusBadRequest, "ErrorInvalidRecipients", "At least one recipient is required.")
		return false
	}
	return true
}
