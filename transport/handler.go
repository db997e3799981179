package transport

import (
	"context"
	"io"
)

// Handler receives the messages a Server accepts.
//
// ServeSMTP is called once per message, after the client's DATA (or first
// BDAT) command, while the client waits. body streams the message as
// received, starting with the Server's Received trace header (RFC 5321
// §4.4); it is never held in memory by the Server. The Server sends
// "250 2.0.0" only after ServeSMTP returns nil and the body ended cleanly, so
// a queue can write and fsync the message before the client is told it was
// accepted. ServeSMTP must read body to io.EOF before returning nil: a read
// error (the client vanished, the message exceeded MaxMessageBytes) means the
// message is incomplete and must not be kept.
//
// An error that is or wraps an *Error with a 4xx or 5xx code is sent to the
// client as is (code, enhanced code and message). Any other error is logged
// and answered "451 4.3.0" with a generic text; its text never reaches the
// client.
//
// env.TLSRequiredNo ("TLS-Required: No", RFC 8689 §3) is found by the
// Server in the header section as the Handler reads it: it is final once the
// Handler has read past the header section, at the latest at io.EOF.
//
// ctx is cancelled when the connection closes or the Server is closed.
// env is the Handler's to keep. Implementations must be safe for concurrent
// use: one call per connection may be running at a time.
type Handler interface {
	ServeSMTP(ctx context.Context, env *Envelope, body io.Reader) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, env *Envelope, body io.Reader) error

// ServeSMTP calls f.
func (f HandlerFunc) ServeSMTP(ctx context.Context, env *Envelope, body io.Reader) error {
	return f(ctx, env, body)
}

var _ Handler = HandlerFunc(nil)

// RecipientChecker is an add-on interface for a Handler: a Handler that implements it is asked about
// each recipient when the client sends RCPT (RFC 5321 §4.1.1.3), so that a
// recipient can be refused before any of the message is transferred, for
// example relaying denied or an unknown user.
//
// env is the transaction so far: the reverse-path and MAIL parameters, the
// recipients already accepted (not rcpt), the client address, HELO name,
// authenticated identity and TLS summary. It is a copy made for this call;
// ID, ReceivedAt and TLSRequiredNo are not yet set. rcpt carries its DSN
// parameters (RFC 3461).
//
// A nil error accepts the recipient (250). An error that is or
// wraps an *Error with a 4xx or 5xx code is sent to the client as is
// (e.g. "554 5.7.1 Relay access denied"); any other error is logged and
// answered "451 4.3.0". A refused recipient is not added to the envelope;
// the transaction goes on with the others. ServeSMTP still sees only
// accepted recipients. ctx is cancelled when the connection closes.
// Implementations must be safe for concurrent use.
type RecipientChecker interface {
	CheckRecipient(ctx context.Context, env *Envelope, rcpt Recipient) error
}

// SenderChecker is an add-on interface for a Handler, like RecipientChecker:
// a Handler that implements it is asked about the reverse-path when the
// client sends MAIL (RFC 5321 §4.1.1.2), before any recipient or message
// data is transferred, for example to bind the sender to the authenticated
// login (Postfix's reject_sender_login_mismatch, see SenderLogins) or to
// refuse mail early while the spool is short of space ("452 4.3.1", Postfix's
// queue_minfree).
//
// The Server asks only after its own checks passed (TLS and AUTH required by
// the listener, REQUIRETLS only under TLS). env is a copy made for this call:
// From (the null reverse-path is ""), the MAIL parameters (Size, Body,
// Return, EnvelopeID, RequireTLS, SMTPUTF8), AuthIdentity, ClientAddr, Helo
// and TLS; it has no recipients, and ID, ReceivedAt and TLSRequiredNo are not
// set.
//
// A nil error accepts the reverse-path (250). An error that is or wraps an
// *Error with a 4xx or 5xx code is sent to the client as is (e.g. "553 5.7.1
// <a@example.org>: Sender address rejected: not owned by user bob"); any
// other error is logged and answered "451 4.3.0". A refused MAIL starts no
// transaction. ctx is cancelled when the connection closes. Implementations
// must be safe for concurrent use.
type SenderChecker interface {
	CheckSender(ctx context.Context, env *Envelope) error
}
