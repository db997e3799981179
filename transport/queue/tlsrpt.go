package queue

import (
	"bytes"
	"context"

	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
)

var _ tlsrpt.Mailer = (*Queue)(nil)

// QueueReport queues a TLS-RPT report message (RFC 8460 §5.3) for to, so
// that a tlsrpt.Reporter can send its mail through the queue: with the
// null reverse-path, so that a failed report does not bounce (no loops),
// and with TLSRequiredNo, as the message's "TLS-Required: No" header asks
// (RFC 8460 §5.3, RFC 8689 §4.2.2). It implements tlsrpt.Mailer.
func (q *Queue) QueueReport(ctx context.Context, to []string, msg []byte) (string, error) {
	env := &transport.Envelope{From: "", TLSRequiredNo: true, ReceivedAt: q.now()}
	for _, a := range to {
		env.Recipients = append(env.Recipients, transport.Recipient{Address: a})
	}
	return q.Enqueue(ctx, env, bytes.NewReader(msg))
}
