package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// TestServerHandler puts the Queue behind a real transport.Server as its
// Handler: when the client's DATA gets 250 the message is already in the
// spool, with the envelope's DSN parameters; when the store fails, the
// client gets a 451 and nothing is kept.
func TestServerHandler(t *testing.T) {
	ca := certtest.MustCA("queue test CA")
	leaf := ca.MustIssue(certtest.LeafOptions{CommonName: "mx.relay.test", DNSNames: []string{"mx.relay.test"}})
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Deliveries block until the test ends, so the spool is observed as the
	// server left it.
	release := make(chan struct{})
	d := DeliverFunc(func(ctx context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	})
	q := &Queue{Store: st, Deliverer: d, PollInterval: 5 * time.Millisecond}
	var handler transport.Handler = q
	var fail atomic.Bool
	srv := &transport.Server{
		Hostname:  "mx.relay.test",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
		Handler: transport.HandlerFunc(func(ctx context.Context, env *transport.Envelope, body io.Reader) error {
			if fail.Load() {
				return (&Queue{Store: failingStore{}, Deliverer: d}).ServeSMTP(ctx, env, body)
			}
			return handler.ServeSMTP(ctx, env, body)
		}),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	defer func() { close(release); cancel(); <-done }()

	send := func() error {
		c := dialStartTLS(t, l.Addr().String(), ca.Pool)
		defer c.Close()
		if err := c.Mail("alice@example.org", &smtp.MailOptions{EnvelopeID: "abc123"}); err != nil {
			return err
		}
		if err := c.Rcpt("bob@example.net", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}}); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		io.WriteString(w, "Subject: hi\r\n\r\nHello.\r\n")
		return w.Close() // the reply to the final dot
	}

	if err := send(); err != nil {
		t.Fatalf("sending: %v", err)
	}
	// 250 received: the message must be in the spool now, not "soon".
	msgs, err := st.List(context.Background())
	if err != nil || len(msgs) != 1 {
		t.Fatalf("spool after 250: %d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	if m.From != "alice@example.org" || m.EnvelopeID != "abc123" || m.Recipients[0].Address != "bob@example.net" ||
		m.Recipients[0].Notify != ndr.NotifyFailure || m.ReceivedTLS == nil {
		t.Errorf("stored envelope: %+v %+v", m, m.Recipients[0])
	}
	b, err := st.Body(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	b.Close()
	if !strings.Contains(string(data), "Hello.") || !strings.HasPrefix(string(data), "Received:") {
		t.Errorf("stored body: %q", data)
	}

	fail.Store(true)
	err = send()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("with a failing store the client got %v, want 451", err)
	}
	if msgs, _ := st.List(context.Background()); len(msgs) != 1 {
		t.Errorf("%d messages in the spool, want 1", len(msgs))
	}
}
