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
// env.TLSRequiredNo ("TLS-Required: No", RFC 8689 §5) is found by the
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
