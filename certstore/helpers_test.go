package certstore

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/internal/syncbuf"
)

// writePair writes a leaf's PEM to dir/name.crt and dir/name.key.
func writePair(t *testing.T, dir, name string, l *certtest.Leaf) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	writeFile(t, certFile, l.CertPEM)
	writeFile(t, keyFile, l.KeyPEM)
	return certFile, keyFile
}

// writeFile replaces path atomically (temporary file and rename), so a
// concurrent Watch never reads half a file.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// server is a loopback TLS echo server recording what each handshake saw.
type server struct {
	addr string

	mu       sync.Mutex
	states   []tls.ConnectionState
	hsErrors []error
}

func (s *server) lastState() (tls.ConnectionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.states) == 0 {
		return tls.ConnectionState{}, false
	}
	return s.states[len(s.states)-1], true
}

func (s *server) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hsErrors) == 0 {
		return nil
	}
	return s.hsErrors[len(s.hsErrors)-1]
}

// serve starts a TLS server on 127.0.0.1 with cfg; it stops at test end.
func serve(t *testing.T, cfg *tls.Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, cfg)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					s.mu.Lock()
					s.hsErrors = append(s.hsErrors, err)
					s.mu.Unlock()
					return
				}
				s.mu.Lock()
				s.states = append(s.states, tc.ConnectionState())
				s.mu.Unlock()
				io.Copy(tc, tc) // echo until the client closes
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return s
}

// dial performs a real TLS handshake with the server and one echo round
// trip (which, in TLS 1.3, is also when a client certificate is rejected and
// session tickets arrive). The connection is closed at test end.
func dial(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	if err := echo(c); err != nil {
		return nil, err
	}
	return c, nil
}

func echo(c *tls.Conn) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("ping\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, msg) {
		return errors.New("echo mismatch")
	}
	return nil
}

// peerSerial is the serial number of the certificate the client saw.
func peerSerial(c *tls.Conn) string {
	pcs := c.ConnectionState().PeerCertificates
	if len(pcs) == 0 {
		return "<none>"
	}
	return pcs[0].SerialNumber.Text(16)
}

func serialOf(l *certtest.Leaf) string { return l.X509.SerialNumber.Text(16) }

// insecureClient trusts anything: these tests check WHICH certificate the
// server chose, by serial number, not whether it verifies.
func insecureClient(sni string) *tls.Config {
	return &tls.Config{ServerName: sni, InsecureSkipVerify: true}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

func newLogger(b *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

var _ = x509.NewCertPool
