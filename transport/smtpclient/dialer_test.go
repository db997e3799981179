package smtpclient_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	sasl "github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/transport/smtpclient"
)

// received is one message a recording backend took.
type received struct{ from, to, body string }

type backend struct {
	mu     sync.Mutex
	msgs   []received
	reject string   // a recipient refused with 550
	auths  []string // "authzid/user/password from peer-ip" per AUTH PLAIN
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{b: b, peer: c.Conn().RemoteAddr().(*net.TCPAddr).IP.String()}, nil
}

func (b *backend) got() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	b        *backend
	peer     string
	from, to string
}

// AuthMechanisms and Auth make session a smtp.AuthSession: PLAIN succeeds
// for the password "right" and fails (535) otherwise.
func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(authzid, user, password string) error {
		s.b.mu.Lock()
		s.b.auths = append(s.b.auths, authzid+"/"+user+"/"+password+" from "+s.peer)
		s.b.mu.Unlock()
		if password != "right" {
			return smtp.ErrAuthFailed // 535 5.7.8
		}
		return nil
	}), nil
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.b.reject {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = to
	return nil
}
func (s *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, received{s.from, s.to, string(body)})
	s.b.mu.Unlock()
	return nil
}

// startServer starts a go-smtp server on loopback, with STARTTLS if
// withTLS, and returns its address, a client TLS configuration that trusts
// it and a function that stops it.
func startServer(be *backend, withTLS bool) (addr string, cfg *tls.Config, stop func(), err error) {
	ca := certtest.MustCA("smtpclient test CA")
	leaf := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if withTLS {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	go srv.Serve(l)
	return l.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "mx.test"}, func() { srv.Close() }, nil
}

func serve(t *testing.T, be *backend, withTLS bool) (string, *tls.Config) {
	t.Helper()
	addr, cfg, stop, err := startServer(be, withTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr, cfg
}

func TestSendDATAAndBDAT(t *testing.T) {
	be := &backend{}
	addr, cfg := serve(t, be, true)
	writes := 0
	d := &smtpclient.Dialer{TLSConfig: cfg, Hello: "client.test", AfterWrite: func(net.Conn) { writes++ }}
	ctx := context.Background()
	c, err := d.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(ctx, "a@client.test", "b@mx.test", "Subject: one\r\n\r\nhello\r\n", false); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, "c@client.test", "d@mx.test", "Subject: two\r\n\r\n.dot\r\n", true); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	want := []received{
		{"a@client.test", "b@mx.test", "Subject: one\r\n\r\nhello\r\n"},
		{"c@client.test", "d@mx.test", "Subject: two\r\n\r\n.dot\r\n"}, // BDAT: no dot-stuffing needed
	}
	got := be.got()
	if len(got) != len(want) {
		t.Fatalf("server received %d messages, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d = %q, want %q", i, got[i], want[i])
		}
	}
	// EHLO, STARTTLS, EHLO; MAIL, RCPT, DATA, body; MAIL, RCPT, BDAT; QUIT.
	if writes != 11 {
		t.Errorf("AfterWrite called %d times, want 11", writes)
	}
}

// AuthPlain sends authzid, user and password; a refusal is a *ReplyError
// with the server's 535, and the session goes on. LocalAddr is the address
// the server sees.
func TestAuthPlainAndLocalAddr(t *testing.T) {
	be := &backend{}
	addr, cfg := serve(t, be, true)
	ctx := context.Background()
	d := &smtpclient.Dialer{TLSConfig: cfg, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7)}}
	c, err := d.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.AuthPlain(ctx, "", "alice", "wrong")
	var re *smtpclient.ReplyError
	if !errors.As(err, &re) || re.Command != "AUTH PLAIN" || re.Reply.Code != 535 {
		t.Fatalf("AuthPlain with a wrong password = %v, want a *ReplyError with 535", err)
	}
	if err := c.AuthPlain(ctx, "boss", "alice", "right"); err != nil {
		t.Fatalf("AuthPlain with the right password = %v", err)
	}
	if err := c.Send(ctx, "alice@client.test", "b@mx.test", "Subject: x\r\n\r\nx\r\n", false); err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	got := strings.Join(be.auths, "; ")
	be.mu.Unlock()
	if want := "/alice/wrong from 127.0.0.7; boss/alice/right from 127.0.0.7"; got != want {
		t.Errorf("server saw %q, want %q", got, want)
	}
}

func TestRejectedRecipientIsReplyError(t *testing.T) {
	be := &backend{reject: "nobody@mx.test"}
	addr, cfg := serve(t, be, true)
	ctx := context.Background()
	c, err := (&smtpclient.Dialer{TLSConfig: cfg}).Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Send(ctx, "a@client.test", "nobody@mx.test", "Subject: x\r\n\r\nx\r\n", false)
	var re *smtpclient.ReplyError
	if !errors.As(err, &re) || re.Want != 250 || re.Reply.Code != 550 || re.Command != "RCPT" {
		t.Fatalf("Send = %v, want a *ReplyError for RCPT with 550", err)
	}
	if n := len(be.got()); n != 0 {
		t.Errorf("server received %d messages, want 0", n)
	}
}

func TestSTARTTLSRequired(t *testing.T) {
	addr, cfg := serve(t, &backend{}, false)
	_, err := (&smtpclient.Dialer{TLSConfig: cfg}).Dial(context.Background(), addr)
	var re *smtpclient.ReplyError
	if !errors.As(err, &re) || re.Command != "STARTTLS" || re.Want != 220 {
		t.Fatalf("Dial to a server without STARTTLS = %v, want a *ReplyError for STARTTLS", err)
	}
}

func TestUntrustedCertificateFails(t *testing.T) {
	addr, _ := serve(t, &backend{}, true)
	other := certtest.MustCA("another CA")
	_, err := (&smtpclient.Dialer{TLSConfig: &tls.Config{RootCAs: other.Pool, ServerName: "mx.test"}}).Dial(context.Background(), addr)
	var ue *tls.CertificateVerificationError
	if !errors.As(err, &ue) {
		t.Fatalf("Dial with an untrusted certificate = %v, want a *tls.CertificateVerificationError", err)
	}
}

func TestNoTLSConfig(t *testing.T) {
	if _, err := (&smtpclient.Dialer{}).Dial(context.Background(), "127.0.0.1:1"); !errors.Is(err, smtpclient.ErrNoTLSConfig) {
		t.Fatalf("Dial = %v, want ErrNoTLSConfig", err)
	}
}

// A server that greets and then says nothing: a cancelled context ends
// Dial instead of leaving it blocked.
func TestContextCancelsDial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "220 mute.test\r\n")
		io.Copy(io.Discard, c) // never answers EHLO
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = (&smtpclient.Dialer{TLSConfig: &tls.Config{}}).Dial(ctx, l.Addr().String())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Dial took %v after its context ended", d)
	}
}
