package delivery

import (
	"time"

	"github.com/smtpgw/smtpgw/internal/upstream"
)

// credentialNews is what a caller other than a send (an IMAP or POP3
// login asking for its token) learnt about the gateway's credential: that
// Entra ID refused it, or, when refused is nil, issued a token again.
type credentialNews struct {
	refused *upstream.Error
}

// CredentialRefused records that Entra ID refused the gateway's credential
// (cause.EntraRefused; other causes are ignored) to a caller other than a
// send:
// the engine goes into the outage a refused send starts, with its one
// ERROR line, /status, smtpgw_upstream_up and /readyz, and its messages
// wait. It never blocks: the delivery loop applies the news.
func (e *Engine) CredentialRefused(cause *upstream.Error) {
	if cause.EntraRefused() {
		e.tell(credentialNews{refused: cause})
	}
}

// CredentialAccepted records that Entra ID issued a token again after it
// refused one to the same caller: an outage that Entra ID's refusal
// started ends, one that Graph's refusal started does not (only a send
// can show that Graph takes the gateway again).
func (e *Engine) CredentialAccepted() {
	e.tell(credentialNews{})
}

func (e *Engine) tell(news credentialNews) {
	e.mu.Lock()
	e.credential = &news // the latest news is all that matters
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// takeCredentialNews applies the news told since the last call.
func (e *Engine) takeCredentialNews(now time.Time) {
	e.mu.Lock()
	news := e.credential
	e.credential = nil
	e.mu.Unlock()
	switch {
	case news == nil:
	case news.refused != nil:
		e.refuse(nil, news.refused, nil, now)
	case e.outage != nil && e.outage.cause.EntraRefused():
		e.endOutage(now)
	}
}
