package transporttest

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/transport"
)

// The caller's own Server runs with the fixture certificate; the client
// configuration trusts it; what the Handler accepted is recorded and can be
// waited for; plaintext before STARTTLS is in Seen.
func TestTransportServer(t *testing.T) {
	var refused int
	ts := NewTransportServer(t, &transport.Server{
		Hostname: "mx.example.test",
		Handler: transport.HandlerFunc(func(ctx context.Context, env *transport.Envelope, body io.Reader) error {
			if env.From == "refused@example.org" {
				refused++
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
			}
			_, err := io.Copy(io.Discard, body)
			return err
		}),
	})
	if ts.CA == nil || ts.Server.TLSConfig == nil {
		t.Fatal("no fixture certificate installed")
	}

	// Plaintext MAIL is refused by the server's strict zero policy.
	c, err := smtp.Dial(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("early@example.org", nil); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("plaintext MAIL: %v, want 530 STARTTLS first", err)
	}
	c.Close()

	// A client with another CA's trust fails the handshake.
	// (go-smtp's client handshakes at its next command.)
	if c, err := smtp.DialStartTLS(ts.Addr, MustCA("other").ClientTLSConfig("localhost")); err == nil {
		if err := c.Mail("untrusted@example.org", nil); err == nil {
			t.Error("untrusted client sent MAIL")
		}
		c.Close()
	}

	got := make(chan error, 1)
	go func() {
		_, err := ts.WaitMessages(context.Background(), 2)
		got <- err
	}()
	for _, from := range []string{"a@example.org", "refused@example.org", "b@example.org"} {
		c, err := smtp.DialStartTLS(ts.Addr, ts.ClientTLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		err = c.SendMail(from, []string{"u@example.test"}, strings.NewReader("Subject: t\r\n\r\nBODY-"+from+"\r\n"))
		if (err != nil) != (from == "refused@example.org") {
			t.Errorf("%s: %v", from, err)
		}
		c.Quit()
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitMessages did not return after two messages")
	}
	msgs := ts.Messages()
	if len(msgs) != 2 || refused != 1 {
		t.Fatalf("%d messages recorded, %d refused; want 2 and 1", len(msgs), refused)
	}
	for i, from := range []string{"a@example.org", "b@example.org"} {
		m := msgs[i]
		if m.Envelope.From != from || len(m.Envelope.Recipients) != 1 || !strings.Contains(string(m.Data), "BODY-"+from) || m.Envelope.TLS == nil {
			t.Errorf("message %d: %+v %q", i, m.Envelope, m.Data)
		}
	}
	seen := ts.Seen()
	if !Contains(seen, "STARTTLS", "MAIL FROM:<early@") || Contains(seen, "BODY-") {
		t.Errorf("Seen: %q", seen)
	}
	if n := ts.Connections(); n != 5 {
		t.Errorf("%d connections, want 5", n)
	}
}

// A configuration Serve refuses is reported by Close.
func TestTransportServerServeError(t *testing.T) {
	ts, err := StartTransportServer(&transport.Server{Kind: transport.KindSubmission}) // no Authenticator
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(); err == nil || errors.Is(err, transport.ErrServerClosed) {
		t.Errorf("Close: %v, want Serve's refusal", err)
	}
}

// The caller's own TLSConfig is kept, and ClientTLSConfig trusts its
// certificate.
func TestTransportServerOwnCertificate(t *testing.T) {
	ca := MustCA("own")
	leaf, err := ca.IssueLocalhost()
	if err != nil {
		t.Fatal(err)
	}
	cfg := leaf.ServerTLSConfig()
	ts := NewTransportServer(t, &transport.Server{TLSConfig: cfg})
	if ts.CA != nil || ts.Server.TLSConfig != cfg {
		t.Error("TLSConfig replaced")
	}
	c, err := smtp.DialStartTLS(ts.Addr, ts.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.org", []string{"u@example.test"}, strings.NewReader("Subject: t\r\n\r\nx\r\n")); err != nil {
		t.Error(err)
	}
	c.Quit()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ts.WaitMessages(ctx, 1); err != nil {
		t.Error(err)
	}
}

// WaitMessages returns at once when enough messages are there, wakes up
// for each new one, and gives up with ctx.
func TestWaitMessages(t *testing.T) {
	var b inbox
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if msgs, err := b.wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) || len(msgs) != 0 {
		t.Errorf("empty inbox: %v %v, want deadline exceeded", msgs, err)
	}
	done := make(chan []*Message)
	go func() {
		msgs, err := b.wait(context.Background(), 2)
		if err != nil {
			t.Error(err)
		}
		done <- msgs
	}()
	b.add(&Message{Data: []byte("1")})
	select {
	case <-done:
		t.Fatal("returned after one of two messages")
	case <-time.After(20 * time.Millisecond):
	}
	b.add(&Message{Data: []byte("2")})
	select {
	case msgs := <-done:
		if len(msgs) != 2 || string(msgs[1].Data) != "2" {
			t.Errorf("got %v", msgs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not woken by the second message")
	}
	if msgs, err := b.wait(context.Background(), 1); err != nil || len(msgs) != 2 {
		t.Errorf("ready inbox: %v %v", msgs, err)
	}
}

// The go-smtp fixture Server records what it accepts for WaitMessages too.
func TestServerWaitMessages(t *testing.T) {
	srv := NewTLSServer(t)
	// The server records the message before its 250 reaches the client:
	// the client's result is awaited before the test (and the server)
	// ends.
	sent := make(chan error, 1)
	go func() {
		c, err := smtp.DialStartTLS(srv.Addr, srv.CA.ClientTLSConfig(srv.Hostname))
		if err != nil {
			sent <- err
			return
		}
		defer c.Quit()
		sent <- c.SendMail("a@example.org", []string{"u@example.test"}, strings.NewReader("Subject: t\r\n\r\nx\r\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := srv.WaitMessages(ctx, 1)
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.From != "a@example.org" {
		t.Fatalf("%v %v", msgs, err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("client: %v", err)
	}
}

// A Server without a Handler accepts every message.
func TestTransportServerNilHandler(t *testing.T) {
	ts := NewTransportServer(t, &transport.Server{})
	c, err := smtp.DialStartTLS(ts.Addr, ts.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.SendMail("a@example.org", []string{"u@example.test"}, strings.NewReader("Subject: t\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if msgs, err := ts.WaitMessages(ctx, 1); err != nil || string(msgs[0].Data[len(msgs[0].Data)-3:]) != "x\r\n" {
		t.Fatalf("%v %v", msgs, err)
	}
}
