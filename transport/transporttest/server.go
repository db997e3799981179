package transporttest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// CertKind selects the certificate a Server presents.
type CertKind int

// Certificate kinds.
const (
	// NoTLS: the server does not offer STARTTLS.
	NoTLS CertKind = iota
	// GoodCert: valid, issued by the server's CA for its Hostname.
	GoodCert
	// WrongNameCert: valid and trusted, but for "wrong-name.invalid".
	WrongNameCert
	// ExpiredCert: trusted and for Hostname, but expired yesterday.
	ExpiredCert
	// UntrustedCert: for Hostname, issued by a CA that RootCAs does not
	// contain.
	UntrustedCert
)

// DefaultHostname is the name a Server's certificate is issued for when
// ServerConfig.Hostname is empty.
const DefaultHostname = "mx.example.test"

// ServerConfig describes a test server. The zero value is a plaintext-only
// server.
type ServerConfig struct {
	// Hostname is the name in the greeting and on a GoodCert, ExpiredCert or
	// UntrustedCert certificate. Empty means DefaultHostname.
	Hostname string
	// Cert selects STARTTLS and the certificate presented.
	Cert CertKind
	// CA issues the certificate (for every kind but UntrustedCert). Nil
	// means a new CA per server. Share one CA to make several servers
	// trusted by one RootCAs pool.
	CA *CA
	// ImplicitTLS makes the server speak TLS from the first byte (RFC 8314
	// §3) instead of offering STARTTLS. It needs a Cert other than NoTLS.
	ImplicitTLS bool
	// MinVersion and MaxVersion bound the TLS versions offered; zero means
	// crypto/tls's defaults.
	MinVersion, MaxVersion uint16
	// ClientCAs, when set, makes the server request a client certificate
	// and verify any certificate sent against this pool.
	ClientCAs *x509.CertPool
	// RequireTLS advertises REQUIRETLS (after STARTTLS only, RFC 8689 §4).
	RequireTLS bool
	// DSN and SMTPUTF8 advertise those extensions.
	DSN, SMTPUTF8 bool
	// MaxMessageBytes advertises SIZE with this limit; zero means no limit.
	MaxMessageBytes int64
	// Auth enables AUTH PLAIN under TLS for these username → password pairs.
	Auth map[string]string
	// Rcpt, if set, is called for each RCPT; a returned *smtp.SMTPError
	// is sent as the reply (other errors as 451).
	Rcpt func(addr string) error
	// Data, if set, is called with each message; its error is the reply to
	// the final dot.
	Data func(m *Message) error
}

// Message is one message a Server or a TransportServer accepted.
type Message struct {
	// Envelope holds the envelope as received, with Helo, AuthIdentity,
	// TLS (nil in plaintext) and ReceivedAt filled; from a TransportServer,
	// as its Handler received it.
	Envelope transport.Envelope
	// Data is the message content after dot-unstuffing (RFC 5321 §4.5.2).
	Data []byte
	// TLS is the connection state, nil for plaintext and for messages of
	// a TransportServer (see Envelope.TLS).
	TLS *tls.ConnectionState
	// MailAt is when the MAIL command was accepted: the transaction ran
	// from MailAt to Envelope.ReceivedAt (RFC 5321 §3.3).
	MailAt time.Time
}

// Server is a test SMTP server listening on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Host is the loopback IP and Port the port of Addr.
	Host string
	Port int
	// Hostname is the configured name (see ServerConfig.Hostname).
	Hostname string
	// CA is the server's CA: its Pool verifies good, wrong-name and
	// expired certificates but not untrusted ones.
	CA *CA
	// Certificate is what the server presents; nil for NoTLS.
	Certificate *tls.Certificate

	cfg ServerConfig
	srv *smtp.Server
	l   net.Listener

	tap wiretap
	box inbox

	mu     sync.Mutex
	mails  []string
	helos  []string
	closed bool
}

// NewServer starts a server described by cfg. It fails tb if it cannot
// listen and is closed when tb's test ends.
func NewServer(tb testing.TB, cfg ServerConfig) *Server {
	tb.Helper()
	s, err := StartServer(cfg)
	if err != nil {
		tb.Fatalf("transporttest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// StartServer is NewServer for use outside tests: the caller must Close
// the server.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.Hostname == "" {
		cfg.Hostname = DefaultHostname
	}
	s := &Server{Hostname: cfg.Hostname, cfg: cfg, CA: cfg.CA}
	if s.CA == nil {
		ca, err := NewCA("transporttest CA")
		if err != nil {
			return nil, err
		}
		s.CA = ca
	}
	var tlsCfg *tls.Config
	if cfg.Cert != NoTLS {
		leaf, err := s.issue(cfg.Cert)
		if err != nil {
			return nil, err
		}
		s.Certificate = &leaf.TLS
		tlsCfg = &tls.Config{
			Certificates: []tls.Certificate{leaf.TLS},
			MinVersion:   cfg.MinVersion,
			MaxVersion:   cfg.MaxVersion,
		}
		if cfg.ClientCAs != nil {
			tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
			tlsCfg.ClientCAs = cfg.ClientCAs
		}
	}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		sess := &session{srv: s, helo: c.Hostname()}
		if cs, ok := c.TLSConnectionState(); ok {
			sess.tls = &cs
		}
		s.mu.Lock()
		s.helos = append(s.helos, c.Hostname())
		s.mu.Unlock()
		if s.cfg.Auth != nil {
			return &authSession{sess}, nil
		}
		return sess, nil
	})
	srv := smtp.NewServer(be)
	srv.Domain = cfg.Hostname
	srv.TLSConfig = tlsCfg
	srv.EnableREQUIRETLS = cfg.RequireTLS
	srv.EnableDSN = cfg.DSN
	srv.EnableSMTPUTF8 = cfg.SMTPUTF8
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.srv, s.l = srv, l
	ta := l.Addr().(*net.TCPAddr)
	s.Addr, s.Host, s.Port = ta.String(), ta.IP.String(), ta.Port
	sl := s.tap.listener(l)
	if cfg.ImplicitTLS {
		if tlsCfg == nil {
			l.Close()
			return nil, errors.New("transporttest: ImplicitTLS needs a certificate")
		}
		sl = tls.NewListener(sl, tlsCfg)
	}
	go srv.Serve(sl)
	return s, nil
}

func (s *Server) issue(kind CertKind) (*Leaf, error) {
	o := LeafOptions{DNSNames: []string{s.Hostname}}
	ca := s.CA
	switch kind {
	case WrongNameCert:
		o.DNSNames = []string{"wrong-name.invalid"}
	case ExpiredCert:
		o.NotBefore = time.Now().Add(-72 * time.Hour)
		o.NotAfter = time.Now().Add(-24 * time.Hour)
	case UntrustedCert:
		other, err := NewCA("transporttest untrusted CA")
		if err != nil {
			return nil, err
		}
		ca = other
	}
	return ca.Issue(o)
}

// NewTLSServer starts a server offering STARTTLS with a valid certificate
// for DefaultHostname, issued by its own CA (see Server.RootCAs).
func NewTLSServer(tb testing.TB) *Server {
	tb.Helper()
	return NewServer(tb, ServerConfig{Cert: GoodCert})
}

// NewPlainServer starts a server that does not offer STARTTLS.
func NewPlainServer(tb testing.TB) *Server { tb.Helper(); return NewServer(tb, ServerConfig{}) }

// NewWrongNameServer starts a TLS server whose trusted certificate names
// another host.
func NewWrongNameServer(tb testing.TB) *Server {
	tb.Helper()
	return NewServer(tb, ServerConfig{Cert: WrongNameCert})
}

// NewExpiredServer starts a TLS server with an expired certificate.
func NewExpiredServer(tb testing.TB) *Server {
	tb.Helper()
	return NewServer(tb, ServerConfig{Cert: ExpiredCert})
}

// NewUntrustedServer starts a TLS server whose certificate is issued by a
// CA that RootCAs does not contain.
func NewUntrustedServer(tb testing.TB) *Server {
	tb.Helper()
	return NewServer(tb, ServerConfig{Cert: UntrustedCert})
}

// RootCAs returns a pool with the server's CA, for a client's RootCAs.
func (s *Server) RootCAs() *x509.CertPool { return s.CA.Pool }

// Close stops the server and closes its connections. It is safe to call
// more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.srv.Close()
}

// Seen returns a copy of every byte the server read from its clients, as
// it crossed the socket: commands in plaintext before STARTTLS, ciphertext
// after it. A string found here was sent unencrypted.
func (s *Server) Seen() []byte {
	return s.tap.seen()
}

// Messages returns the messages accepted so far, in order.
func (s *Server) Messages() []*Message { return s.box.list() }

// WaitMessages waits until the server has accepted at least n messages and
// returns them all. If ctx ends first, it returns the messages accepted so
// far and an error wrapping ctx's cause (context.DeadlineExceeded for a
// timeout).
func (s *Server) WaitMessages(ctx context.Context, n int) ([]*Message, error) {
	return s.box.wait(ctx, n)
}

// Mails returns the reverse-path of every MAIL command the server
// accepted, in plaintext or over TLS, whether or not a message followed
// (RFC 5321 §4.1.1.2): empty when no client began a transaction.
func (s *Server) Mails() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mails...)
}

// EHLONames returns the EHLO/HELO names the server was greeted with, one
// per session (a new session starts after STARTTLS).
func (s *Server) EHLONames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.helos...)
}

// Connections returns the number of TCP connections accepted.
func (s *Server) Connections() int {
	return s.tap.connections()
}

type session struct {
	srv  *Server
	helo string
	tls  *tls.ConnectionState
	auth string
	msg  *Message
}

func (s *session) Reset()        { s.msg = nil }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.srv.mu.Lock()
	s.srv.mails = append(s.srv.mails, from)
	s.srv.mu.Unlock()
	m := &Message{TLS: s.tls, MailAt: time.Now()}
	env := &m.Envelope
	env.From = from
	env.Helo = s.helo
	env.AuthIdentity = s.auth
	if s.tls != nil {
		env.TLS = transport.NewTLSInfo(*s.tls, len(s.tls.VerifiedChains) > 0)
	}
	if opts != nil {
		env.RequireTLS = opts.RequireTLS
		env.SMTPUTF8 = opts.UTF8
		env.Body = transport.BodyType(opts.Body)
		env.Size = opts.Size
		env.Return, _ = ndr.ParseReturn(string(opts.Return)) // go-smtp checked it
		env.EnvelopeID = opts.EnvelopeID
	}
	s.msg = m
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.msg == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	if f := s.srv.cfg.Rcpt; f != nil {
		if err := f(to); err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				return se
			}
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 0, 0}, Message: err.Error()}
		}
	}
	r := transport.Recipient{Address: to}
	if opts != nil {
		var kw []string
		for _, n := range opts.Notify {
			kw = append(kw, string(n))
		}
		r.Notify, _ = ndr.ParseNotify(strings.Join(kw, ",")) // go-smtp checked it
		if opts.OriginalRecipient != "" {
			r.ORCPT = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
		}
	}
	s.msg.Envelope.Recipients = append(s.msg.Envelope.Recipients, r)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := s.msg
	s.msg = nil
	if m == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no transaction"}
	}
	m.Data = b
	m.Envelope.ReceivedAt = time.Now()
	var derr error
	if f := s.srv.cfg.Data; f != nil {
		derr = f(m)
	}
	if derr == nil {
		s.srv.box.add(m)
	}
	return derr
}

// authSession adds AUTH PLAIN.
type authSession struct{ *session }

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if pw, ok := s.srv.cfg.Auth[username]; !ok || pw != password {
			return smtp.ErrAuthFailed
		}
		s.auth = username
		return nil
	}), nil
}

// Contains reports whether the bytes the server read contain any of the
// given strings, case-insensitively: a convenience for asserting that
// "MAIL FROM", "RCPT TO" or a body marker never crossed in plaintext.
func Contains(wire []byte, needles ...string) bool {
	low := strings.ToLower(string(wire))
	for _, n := range needles {
		if strings.Contains(low, strings.ToLower(n)) {
			return true
		}
	}
	return false
}

// MixedRcpt is a ServerConfig.Rcpt for crash and cluster tests that need
// every outcome: recipients bad-* are refused with "550 5.1.1" (the
// sender gets a failed DSN), slow-* get "451 4.3.0" half the time (they
// are retried), the rest are accepted.
func MixedRcpt(addr string) error {
	switch {
	case strings.HasPrefix(addr, "bad-"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(addr, "slow-") && rand.IntN(2) == 0:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "busy"}
	}
	return nil
}
