package convert

import "io"

// Opener opens a fresh stream over some bytes each time it is called: the
// raw message in the spool, or the decoded content of one attachment. It lets
// large content be streamed twice (once to measure, once to send) without
// ever being held whole in memory.
type Opener func() (io.ReadCloser, error)

// Message is the Graph message resource, as much of it as the gateway sets.
// Its JSON form is exactly what Graph expects inside a sendMail request or a
// draft creation.
type Message struct {
	Subject                string           `json:"subject"`
	Body                   ItemBody         `json:"body"`
	From                   *Recipient       `json:"from,omitempty"`
	ToRecipients           []Recipient      `json:"toRecipients,omitempty"`
	CcRecipients           []Recipient      `json:"ccRecipients,omitempty"`
	BccRecipients          []Recipient      `json:"bccRecipients,omitempty"`
	ReplyTo                []Recipient      `json:"replyTo,omitempty"`
	Importance             string           `json:"importance,omitempty"`
	InternetMessageID      string           `json:"internetMessageId,omitempty"`
	InternetMessageHeaders []Header         `json:"internetMessageHeaders,omitempty"`
	Attachments            []FileAttachment `json:"attachments,omitempty"`
}

// ItemBody is Graph's itemBody: ContentType is "text" or "html".
type ItemBody struct {
	ContentType string `json:"contentType"`
	Content     string `json:"content"`
}

// Recipient is Graph's recipient.
type Recipient struct {
	EmailAddress EmailAddress `json:"emailAddress"`
}

// EmailAddress is Graph's emailAddress.
type EmailAddress struct {
	Name    string `json:"name,omitempty"`
	Address string `json:"address"`
}

// Header is Graph's internetMessageHeader; Graph accepts only names that
// start with "x-", at most five of them.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// FileAttachmentType is the @odata.type of every attachment the gateway sends.
const FileAttachmentType = "#microsoft.graph.fileAttachment"

// FileAttachment is Graph's fileAttachment with its content inline.
// encoding/json writes []byte as standard base64, which is Graph's Edm.Binary.
type FileAttachment struct {
	ODataType    string `json:"@odata.type"`
	Name         string `json:"name"`
	ContentType  string `json:"contentType,omitempty"`
	IsInline     bool   `json:"isInline"`
	ContentID    string `json:"contentId,omitempty"`
	ContentBytes []byte `json:"contentBytes"`
}

// Attachment is one attachment found in the MIME message, described but not
// loaded: its decoded bytes are streamed from the source by Open.
type Attachment struct {
	Name        string
	ContentType string
	IsInline    bool
	ContentID   string
	Size        int64 // decoded size in bytes
	Open        Opener

	location string // Content-Location, for HTML that refers to the part by URL
}

// Result is the outcome of converting one message.
type Result struct {
	// Message carries everything but attachments (Message.Attachments is
	// empty): the sender decides how each attachment travels.
	Message Message
	// Attachments in the order they appear in the MIME message.
	Attachments []Attachment
	// MIME, when not nil, means the message must go to Graph as MIME
	// unchanged (signed or encrypted mail): it opens the exact bytes to
	// send, already carrying a Bcc header for envelope-only recipients.
	MIME Opener
	// DroppedHeaders names the X- headers that did not fit Graph's limit of
	// five; the caller logs them.
	DroppedHeaders []string
}

// SendMailRequest is the body of POST /users/{mailbox}/sendMail.
type SendMailRequest struct {
	Message         Message `json:"message"`
	SaveToSentItems bool    `json:"saveToSentItems"`
}

// SendMailRequest loads every attachment into the message: the request
// in memory, as encoding/json would write it. Senders stream it with
// WriteSendMailRequest instead; tests compare the two.
func (r *Result) SendMailRequest(saveToSentItems bool) (*SendMailRequest, error) {
	m := r.Message
	m.Attachments = make([]FileAttachment, 0, len(r.Attachments))
	for _, a := range r.Attachments {
		fa, err := a.Load()
		if err != nil {
			return nil, err
		}
		m.Attachments = append(m.Attachments, fa)
	}
	if len(m.Attachments) == 0 {
		m.Attachments = nil
	}
	return &SendMailRequest{Message: m, SaveToSentItems: saveToSentItems}, nil
}

// Load reads the attachment's content into a FileAttachment.
func (a Attachment) Load() (FileAttachment, error) {
	rc, err := a.Open()
	if err != nil {
		return FileAttachment{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return FileAttachment{}, err
	}
	return FileAttachment{
		ODataType: FileAttachmentType, Name: a.Name, ContentType: a.ContentType,
		IsInline: a.IsInline, ContentID: a.ContentID, ContentBytes: data,
	}, nil
}
