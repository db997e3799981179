package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sasl "github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailtls/mailtls/internal/syncbuf"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

// testRelay is a relay started in-process on loopback ports chosen by the
// kernel.
type testRelay struct {
	*Relay
	cfg  *Config
	logs *syncBuffer
	root *x509.CertPool // trusts the relay's self-signed certificate
}

// startRelay parses args after the test defaults (-data in a temp dir,
// every listener on 127.0.0.1:0, -hostname relay.test) and starts the relay;
// it is shut down when the test ends.
func startRelay(t *testing.T, args ...string) *testRelay {
	t.Helper()
	return startRelayWith(t, nil, args...)
}

// testRecipients are the local recipients (bare names, so in every local
// domain) of a test relay unless the test gives its own -recipients: the
// names the tests mail to. Any other local recipient gets 550 5.1.1.
const testRecipients = "user\nsender\nalice\nbob\ncarol\nother\ns1\ns2\ns3\ns4\ntls-reports\n"

// startRelayWith is startRelay with a hook that adjusts the relay's seams
// (resolvers, dialers, roots) after it is built and before it starts.
func startRelayWith(t *testing.T, setup func(*Relay), args ...string) *testRelay {
	t.Helper()
	base := []string{
		"-data", t.TempDir(), "-hostname", "relay.test",
		"-smtp", "127.0.0.1:0", "-submission", "127.0.0.1:0", "-submissions", "127.0.0.1:0",
		"-recipients", writeFile(t, "recipients", testRecipients),
	}
	logs := &syncBuffer{}
	cfg, err := parseFlags(append(base, args...), logs)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	r, err := newRelay(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("newRelay: %v", err)
	}
	if setup != nil {
		setup(r)
	}
	r.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	})
	pem, err := os.ReadFile(filepath.Join(cfg.DataDir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &testRelay{Relay: r, cfg: cfg, logs: logs, root: pool}
}

func (tr *testRelay) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: "relay.test", RootCAs: tr.root}
}

// dial connects to a listener ("smtp", "submission") and says EHLO.
func (tr *testRelay) dial(t *testing.T, name string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(tr.Addr(name))
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// dialTLS connects with STARTTLS ("smtp", "submission") or implicit TLS
// ("submissions").
func (tr *testRelay) dialTLS(t *testing.T, name string) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	var err error
	if name == "submissions" {
		c, err = smtp.DialTLS(tr.Addr(name), tr.tlsConfig())
		if err == nil {
			err = c.Hello("client.test")
		}
	} else {
		c, err = tr.startTLS(name, tr.tlsConfig())
	}
	if err != nil {
		t.Fatalf("connect %s with TLS: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startTLS connects, says EHLO, STARTTLS, and EHLO client.test again over
// TLS (go-smtp v0.25's client does not export StartTLS; its pre-TLS EHLO
// says "localhost", which the relay forgets after TLS, RFC 3207 §4.2).
// go-smtp's handshake is lazy: a TLS failure surfaces from the second EHLO.
func (tr *testRelay) startTLS(name string, cfg *tls.Config) (*smtp.Client, error) {
	conn, err := net.Dial("tcp", tr.Addr(name))
	if err != nil {
		return nil, err
	}
	c, err := smtp.NewClientStartTLS(conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Hello("client.test"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// send runs MAIL, RCPT..., DATA with body and returns the first error.
func send(c *smtp.Client, from string, to []string, body string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	return w.Close()
}

func auth(c *smtp.Client, user, pass string) error {
	return c.Auth(sasl.NewPlainClient("", user, pass))
}

// smtpCode returns the reply code and enhanced code of err.
func smtpCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("want an SMTP reply error, got %v", err)
	}
	return se.Code, fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

// writeUsers writes a -users file with one bcrypt hash.
func writeUsers(t *testing.T, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte("# test users\n"+user+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// maildirFiles lists the files in a Maildir sub-directory ("new", "tmp").
func maildirFiles(t *testing.T, cfg *Config, addr, sub string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(cfg.DataDir, "mail", addr, sub))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(cfg.DataDir, "mail", addr, sub, e.Name()))
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const testBody = "From: a@localhost\r\nTo: b\r\nSubject: hello\r\n\r\nHello over TLS.\r\n"

func contains(s string, subs ...string) error {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return fmt.Errorf("missing %q in:\n%s", sub, s)
		}
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
