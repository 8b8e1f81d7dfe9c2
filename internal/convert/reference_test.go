package convert

import "io"

// The in-memory form of the sendMail request, as encoding/json writes it:
// the reference the streamed writer is checked against.

// SendMailRequest loads every attachment into the message: the request
// in memory, as encoding/json writes it. The gateway streams it with
// WriteSendMailRequest; the tests compare the two.
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
