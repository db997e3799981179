package transporttest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/transport"
)

// TransportServer is the caller's own *transport.Server serving on a
// loopback port, as httptest.Server runs an http.Handler: the server under
// test, with its real STARTTLS, AUTH and policy, and a client TLS
// configuration that trusts it. Start one with NewTransportServer.
type TransportServer struct {
	// Addr is "127.0.0.1:port"; Host and Port are its parts.
	Addr string
	Host string
	Port int
	// Server is the server given to NewTransportServer.
	Server *transport.Server
	// CA issued the fixture certificate installed when Server.TLSConfig
	// was nil, valid for LocalhostNames; nil when the caller brought its
	// own TLSConfig.
	CA *CA

	roots *x509.CertPool
	tap   wiretap
	box   inbox
	errc  chan error

	closeOnce sync.Once
	closeErr  error
}

// NewTransportServer starts srv on a new listener on 127.0.0.1 and closes
// it when tb's test ends, failing tb if Serve ended with an error other
// than transport.ErrServerClosed (a configuration Serve refuses).
//
// Before it starts, srv is completed for a test:
//   - a nil TLSConfig becomes a certificate for LocalhostNames issued by a
//     fresh CA (TransportServer.CA);
//   - the Handler is wrapped so that the messages it accepts (returns nil
//     for) are recorded for Messages and WaitMessages, with their body; a
//     nil Handler accepts every message.
//
// The caller must not use srv's listener-level methods (Serve,
// ListenAndServe) itself; Close, or the end of the test, shuts it down.
func NewTransportServer(tb testing.TB, srv *transport.Server) *TransportServer {
	tb.Helper()
	s, err := StartTransportServer(srv)
	if err != nil {
		tb.Fatalf("transporttest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("transporttest: %v", err)
		}
	})
	return s
}

// StartTransportServer is NewTransportServer for use outside tests: the
// caller must Close the server.
func StartTransportServer(srv *transport.Server) (*TransportServer, error) {
	s := &TransportServer{Server: srv, errc: make(chan error, 1)}
	if srv.TLSConfig == nil {
		ca, err := NewCA("transporttest CA")
		if err != nil {
			return nil, err
		}
		leaf, err := ca.IssueLocalhost()
		if err != nil {
			return nil, err
		}
		s.CA, s.roots = ca, ca.Pool
		srv.TLSConfig = leaf.ServerTLSConfig()
	} else {
		s.roots = x509.NewCertPool()
		for _, c := range srv.TLSConfig.Certificates {
			if leaf, err := leafOf(c); err == nil {
				s.roots.AddCert(leaf)
			}
		}
	}
	next := srv.Handler
	srv.Handler = transport.HandlerFunc(func(ctx context.Context, env *transport.Envelope, body io.Reader) error {
		data, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if next != nil {
			if err := next.ServeSMTP(ctx, env, bytes.NewReader(data)); err != nil {
				return err
			}
		}
		m := &Message{Envelope: *env, Data: data}
		m.Envelope.Recipients = slices.Clone(env.Recipients)
		s.box.add(m)
		return nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("transporttest: %w", err)
	}
	ta := l.Addr().(*net.TCPAddr)
	s.Addr, s.Host, s.Port = ta.String(), ta.IP.String(), ta.Port
	go func() { s.errc <- srv.Serve(s.tap.listener(l)) }()
	return s, nil
}

func leafOf(c tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// ClientTLSConfig returns a client configuration that trusts the server's
// certificate and expects the name "localhost" in it (RFC 6125 §6), with
// TLS 1.2 as the minimum (RFC 9325 §3.1.1). It trusts the fixture CA, or,
// when the caller set Server.TLSConfig, the certificates listed in its
// Certificates (as trust anchors; set ServerName to the name they carry).
// It is a new value each time; change it freely.
func (s *TransportServer) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.roots, ServerName: LocalhostNames[0], MinVersion: tls.VersionTLS12}
}

// Messages returns the messages the server accepted so far, in order: the
// Envelope as the Handler received it and the body. TLS is nil; the TLS of
// the session is in Envelope.TLS.
func (s *TransportServer) Messages() []*Message { return s.box.list() }

// WaitMessages waits until the server has accepted at least n messages and
// returns them all. If ctx ends first, it returns the messages accepted so
// far and an error wrapping ctx's cause (context.DeadlineExceeded for a
// timeout).
func (s *TransportServer) WaitMessages(ctx context.Context, n int) ([]*Message, error) {
	return s.box.wait(ctx, n)
}

// Seen returns a copy of every byte the server read from its clients, as
// it crossed the socket: plaintext before STARTTLS, ciphertext after it.
// A string found here was sent unencrypted.
func (s *TransportServer) Seen() []byte { return s.tap.seen() }

// Connections returns the number of TCP connections accepted.
func (s *TransportServer) Connections() int { return s.tap.connections() }

// Close shuts the server down, giving transactions in progress five
// seconds to finish (transport.Server.Shutdown), and waits for Serve to
// return. It returns Serve's error unless that is
// transport.ErrServerClosed. It is safe to call more than once.
func (s *TransportServer) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Server.Shutdown(ctx)
		if err := <-s.errc; !errors.Is(err, transport.ErrServerClosed) {
			s.closeErr = fmt.Errorf("transporttest: Serve: %w", err)
		}
	})
	return s.closeErr
}
