package transport_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// rawServer runs script on each accepted connection (loopback).
func rawServer(t *testing.T, script func(c net.Conn, r *bufio.Reader)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				script(c, bufio.NewReader(c))
			}()
		}
	}()
	return l.Addr().String()
}

func TestNullMX(t *testing.T) {
	e := newEnv(t)
	e.mx("nomail.test", "") // MX 0 "." per RFC 7505
	z := e.zones["nomail.test."]
	z.MX[0].Pref = 0
	e.zones["nomail.test."] = z
	res := deliver(t, e.connector(fixed(policy.May), nil), envelope("user@nomail.test"))
	r := res.Recipients[0]
	if r.Status != transport.Failed || r.Reply.Code != 556 || r.Reply.EnhancedCode.String() != "5.1.10" || !errors.Is(r.Reply, transport.ErrNullMX) {
		t.Errorf("null MX: %v %v", r.Status, r.Reply)
	}
	if d := e.dialer.Dialed(); len(d) != 0 {
		t.Errorf("dialled %v for a null MX domain", d)
	}
}

func TestMXPreferenceAndFallback(t *testing.T) {
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "mx3.example.test"})
	e := newEnv(t)
	e.mx("example.test", "mx1.example.test", "mx2.example.test", "mx3.example.test")
	e.host("mx1.example.test", "192.0.2.1", closedAddr(t)) // connection refused
	busy := rawServer(t, func(c net.Conn, _ *bufio.Reader) { c.Write([]byte("421 4.3.2 too busy\r\n")) })
	e.host("mx2.example.test", "192.0.2.2", busy) // 4xx greeting
	e.host("mx3.example.test", "192.0.2.3", srv.Addr)
	// Scramble the published order: preference, not order, must decide.
	z := e.zones["example.test."]
	z.MX[0], z.MX[2] = z.MX[2], z.MX[0]
	e.zones["example.test."] = z

	res := deliver(t, e.connector(fixed(policy.Verify), srv), envelope("user@example.test"))
	r := res.Recipients[0]
	wantDelivered(t, r)
	if r.RemoteMTA.Host != "mx3.example.test" {
		t.Errorf("delivered via %v", r.RemoteMTA)
	}
	want := []string{"192.0.2.1:25", "192.0.2.2:25", "192.0.2.3:25"}
	if got := e.dialer.Dialed(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("dial order %v, want %v", got, want)
	}
	if len(res.Attempts) != 3 || res.Attempts[0].Err == nil || res.Attempts[1].Err == nil || res.Attempts[2].Err != nil {
		t.Errorf("attempts = %+v", res.Attempts)
	}
	if e, ok := transport.AsError(res.Attempts[1].Err); !ok || e.Code != 421 {
		t.Errorf("second attempt error = %v, want the 421 greeting", res.Attempts[1].Err)
	}
}

func TestAllMXFailDefers(t *testing.T) {
	e := newEnv(t)
	e.mx("example.test", "mx1.example.test", "mx2.example.test")
	e.host("mx1.example.test", "192.0.2.1", closedAddr(t))
	e.host("mx2.example.test", "192.0.2.2", closedAddr(t))
	res := deliver(t, e.connector(fixed(policy.Verify), nil), envelope("user@example.test"))
	r := res.Recipients[0]
	if r.Status != transport.Deferred || !r.Reply.Temporary() {
		t.Errorf("got %v %v", r.Status, r.Reply)
	}
	// No host answered: the failure was found here, not reported by a peer.
	if r.Reply == nil || !r.Reply.Local {
		t.Errorf("connection failures: Local not set on %v", r.Reply)
	}
	if len(e.dialer.Dialed()) != 2 {
		t.Errorf("dialled %v", e.dialer.Dialed())
	}
}

func TestEqualPreferenceShuffleSeam(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.mx("example.test", "a.example.test", "b.example.test")
	z := e.zones["example.test."]
	z.MX[1].Pref = z.MX[0].Pref
	e.zones["example.test."] = z
	e.host("a.example.test", "192.0.2.1", srv.Addr)
	e.host("b.example.test", "192.0.2.2", srv.Addr)
	c := e.connector(fixed(policy.Encrypt), srv)
	shuffled := false
	c.Shuffle = func(n int, swap func(i, j int)) { shuffled = true; swap(0, n-1) }
	deliver(t, c, envelope("user@example.test"))
	if !shuffled || e.dialer.Dialed()[0] != "192.0.2.2:25" {
		t.Errorf("shuffle not applied to equal preferences: %v", e.dialer.Dialed())
	}
}

func TestImplicitMX(t *testing.T) {
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "example.test"})
	e := newEnv(t)
	e.host("example.test", "192.0.2.7", srv.Addr) // A record, no MX
	res := deliver(t, e.connector(fixed(policy.Verify), srv), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
	if res.Recipients[0].RemoteMTA.Host != "example.test" {
		t.Errorf("remote = %v", res.Recipients[0].RemoteMTA)
	}
	// A domain that does not exist at all fails permanently.
	res = deliver(t, e.connector(fixed(policy.Verify), srv), envelope("user@nowhere.test"))
	if r := res.Recipients[0]; r.Status != transport.Failed || r.Reply.EnhancedCode.String() != "5.4.4" {
		t.Errorf("nonexistent domain: %v %v", r.Status, r.Reply)
	}
}

func TestMXPatternsRestrictHosts(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.mx("example.test", "mx.evil.test", "deep.mx.example.test", "mx.example.test")
	e.host("mx.evil.test", "192.0.2.66", srv.Addr)
	e.host("deep.mx.example.test", "192.0.2.67", srv.Addr)
	e.host("mx.example.test", "192.0.2.10", srv.Addr)
	pol := policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: policy.Verify, MXPatterns: []string{"*.example.test"}, Source: policy.SourceMTASTS}, nil
	})
	res := deliver(t, e.connector(pol, srv), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
	// "*.example.test" matches one label only: deep.mx.example.test is out.
	if got := e.dialer.Dialed(); len(got) != 1 || got[0] != "192.0.2.10:25" {
		t.Errorf("dialled %v, want only mx.example.test", got)
	}
	none := policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: policy.Verify, MXPatterns: []string{"mail.example.test"}, Source: policy.SourceMTASTS}, nil
	})
	res = deliver(t, e.connector(none, srv), envelope("user@example.test"))
	if r := res.Recipients[0]; r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrNoMX) {
		t.Errorf("no matching MX: %v %v", r.Status, r.Reply)
	}
}

// One transaction per domain; per-recipient RCPT outcomes.
func TestRecipientsGroupedPerDomain(t *testing.T) {
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert,
		Rcpt: func(a string) error {
			switch {
			case strings.HasPrefix(a, "nobody@"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			case strings.HasPrefix(a, "later@"):
				return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
			}
			return nil
		}})
	other := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: srv.CA, Hostname: "mx.other.test"})
	e := newEnv(t)
	e.single(srv.Addr)
	e.mx("other.test", "mx.other.test")
	e.host("mx.other.test", "192.0.2.11", other.Addr)
	res := deliver(t, e.connector(fixed(policy.Verify), srv),
		envelope("a@example.test", "x@other.test", "nobody@example.test", "b@EXAMPLE.test", "later@example.test"))
	want := []transport.Status{transport.Delivered, transport.Delivered, transport.Failed, transport.Delivered, transport.Deferred}
	for i, r := range res.Recipients {
		if r.Status != want[i] {
			t.Errorf("%s: %v (%v), want %v", r.Recipient.Address, r.Status, r.Reply, want[i])
		}
	}
	if got := res.Recipients[2].Reply; got.Code != 550 || got.Command != "RCPT" || got.EnhancedCode.String() != "5.1.1" || got.Local {
		t.Errorf("rejected recipient reply = %+v", got)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || len(msgs[0].Envelope.Recipients) != 2 {
		t.Fatalf("example.test server got %d messages (%+v), want one with two recipients", len(msgs), msgs)
	}
	if srv.Connections() != 1 {
		t.Errorf("example.test server saw %d connections, want 1", srv.Connections())
	}
	if len(other.Messages()) != 1 {
		t.Errorf("other.test server got %d messages", len(other.Messages()))
	}
}

// EHLO goes out with Connector.Hostname before and after STARTTLS.
func TestEHLONameBeforeAndAfterTLS(t *testing.T) {
	var names []string
	done := make(chan struct{})
	addr := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		defer close(done)
		c.Write([]byte("220 raw ESMTP\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if f := strings.Fields(line); len(f) == 2 && strings.EqualFold(f[0], "EHLO") {
				names = append(names, f[1])
				c.Write([]byte("250-raw\r\n250 PIPELINING\r\n")) // no STARTTLS
				continue
			}
			if strings.EqualFold(line, "QUIT") {
				c.Write([]byte("221 bye\r\n"))
				return
			}
			c.Write([]byte("502 no\r\n"))
		}
	})
	e := newEnv(t)
	e.single(addr)
	deliver(t, e.connector(fixed(policy.Encrypt), nil), envelope("user@example.test"))
	<-done
	if len(names) != 1 || names[0] != clientName {
		t.Errorf("EHLO names %v", names)
	}
	// And through TLS, with go-smtp's server recording every session.
	srv := transporttest.NewTLSServer(t)
	e2 := newEnv(t)
	e2.single(srv.Addr)
	deliver(t, e2.connector(fixed(policy.Verify), srv), envelope("user@example.test"))
	if got := srv.EHLONames(); len(got) != 2 || got[0] != clientName || got[1] != clientName {
		t.Errorf("TLS server EHLO names = %v, want [%s %s]", got, clientName, clientName)
	}
}

// Bytes sent after the 220 to STARTTLS, before the handshake, are an
// injection attempt and end the attempt.
func TestSTARTTLSResponseInjection(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("220 raw ESMTP\r\n"))
		r.ReadString('\n')
		c.Write([]byte("250-raw\r\n250 STARTTLS\r\n"))
		r.ReadString('\n')
		c.Write([]byte("220 go ahead\r\n250-injected\r\n250 OK\r\n"))
		r.ReadString('\n')
	})
	e := newEnv(t)
	e.single(addr)
	res := deliver(t, e.connector(fixed(policy.Encrypt), nil), envelope("user@example.test"))
	r := res.Recipients[0]
	if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrTLSHandshake) || r.Reply.EnhancedCode.String() != "4.7.5" {
		t.Errorf("got %v %v", r.Status, r.Reply)
	}
}

// May reconnects in plaintext when the handshake fails.
func TestMayReconnectsAfterHandshakeFailure(t *testing.T) {
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, MaxVersion: 0x0301}) // TLS 1.0 only
	e := newEnv(t)
	e.single(srv.Addr)
	res := deliver(t, e.connector(fixed(policy.May), srv), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
	if res.Recipients[0].TLS != nil {
		t.Errorf("TLS reported")
	}
	if srv.Connections() != 2 {
		t.Errorf("connections = %d, want 2 (TLS attempt, then plaintext)", srv.Connections())
	}
	// Encrypt does not.
	res = deliver(t, e.connector(fixed(policy.Encrypt), srv), envelope("user@example.test"))
	if r := res.Recipients[0]; r.Status != transport.Deferred || r.Reply.EnhancedCode.String() != "4.7.5" {
		t.Errorf("encrypt vs TLS 1.0 server: %v %v", r.Status, r.Reply)
	}
	if len(srv.Messages()) != 1 {
		t.Errorf("messages = %d", len(srv.Messages()))
	}
}

// A permanent failure at one MX does not bounce the message while another
// MX failed only temporarily.
func TestTemporaryFailureWinsOverPermanent(t *testing.T) {
	srv := transporttest.NewPlainServer(t)
	e := newEnv(t)
	e.mx("example.test", "mx1.example.test", "mx2.example.test")
	e.host("mx1.example.test", "192.0.2.1", closedAddr(t))
	e.host("mx2.example.test", "192.0.2.2", srv.Addr)
	res := deliver(t, e.connector(policy.Fixed{Level: policy.Encrypt, OnFailure: policy.Bounce}, srv), envelope("user@example.test"))
	if r := res.Recipients[0]; r.Status != transport.Deferred || !r.Reply.Temporary() {
		t.Errorf("got %v %v, want deferred", r.Status, r.Reply)
	}
	if len(res.Attempts) != 2 || !errors.Is(res.Attempts[1].Err, transport.ErrSTARTTLSNotOffered) {
		t.Errorf("attempts = %+v", res.Attempts)
	}
}

// Cancelling the context aborts a stalled session and defers.
func TestContextCancelAbortsAttempt(t *testing.T) {
	stall := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("220 slow ESMTP\r\n"))
		r.ReadString('\n') // EHLO, never answered
		r.ReadString('\n')
	})
	e := newEnv(t)
	e.single(stall)
	c := e.connector(fixed(policy.Verify), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := c.Deliver(ctx, envelope("user@example.test"), strings.NewReader(""), 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Deliver took %v after cancellation", d)
	}
	if r := res.Recipients[0]; r.Status != transport.Deferred || !errors.Is(r.Reply, context.DeadlineExceeded) {
		t.Errorf("got %v %v", r.Status, r.Reply)
	}
}

// A server that sends an endless reply line cannot make the client buffer
// it: the reply is cut at 1 MiB and the attempt fails.
func TestOversizedReplyRefused(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, _ *bufio.Reader) {
		c.Write([]byte("220 "))
		chunk := []byte(strings.Repeat("x", 64<<10))
		for i := 0; i < 64; i++ { // 4 MiB, no newline
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	e := newEnv(t)
	e.single(addr)
	res := deliver(t, e.connector(fixed(policy.Verify), nil), envelope("user@example.test"))
	if r := res.Recipients[0]; r.Status != transport.Deferred || r.Reply == nil || r.Reply.Code != 451 {
		t.Errorf("got %v %v", r.Status, r.Reply)
	}
}
