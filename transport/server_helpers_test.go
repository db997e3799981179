package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/internal/syncbuf"
)

// srvPKI is the test CA and a server certificate for "mx.test" and 127.0.0.1.
type srvPKI struct {
	ca     *certtest.CA
	server *certtest.Leaf
}

func newSrvPKI(t testing.TB) *srvPKI {
	t.Helper()
	ca := certtest.MustCA("mailtls server test CA")
	return &srvPKI{ca: ca, server: ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})}
}

func (p *srvPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server.TLS}}
}

func (p *srvPKI) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.ca.Pool, ServerName: "mx.test"}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// delivery is what a recording Handler saw.
type delivery struct {
	env  *Envelope
	body string
}

type recorder struct {
	mu   sync.Mutex
	msgs []delivery
}

func (r *recorder) ServeSMTP(_ context.Context, env *Envelope, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, delivery{env, string(b)})
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.msgs...)
}

// testServer fills the defaults tests rely on and starts s on loopback.
type testServer struct {
	*Server
	addr string
	log  *syncbuf.Buffer // concurrency-safe log sink for assertions on log lines
	rec  *recorder
	pki  *srvPKI
	err  chan error
}

func startServer(t testing.TB, s *Server, pki *srvPKI) *testServer {
	t.Helper()
	ts := &testServer{Server: s, log: &syncbuf.Buffer{}, pki: pki, err: make(chan error, 1)}
	if s.Hostname == "" {
		s.Hostname = "mx.test"
	}
	if s.Handler == nil {
		ts.rec = &recorder{}
		s.Handler = ts.rec
	}
	if s.TLSConfig == nil && pki != nil {
		s.TLSConfig = pki.serverConfig()
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = l.Addr().String()
	go func() { ts.err <- s.Serve(l) }()
	t.Cleanup(func() { s.Close() })
	return ts
}

// dialogue is a raw SMTP client for scripted tests.
type dialogue struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *dialogue {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &dialogue{t: t, conn: c, r: bufio.NewReader(c)}
}

func dialTLS(t testing.TB, addr string, cfg *tls.Config) *dialogue {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &dialogue{t: t, conn: c, r: bufio.NewReader(c)}
}

// read returns one full (possibly multi-line) reply, lines joined by "\n".
func (d *dialogue) read() string {
	d.t.Helper()
	var lines []string
	for {
		l, err := d.r.ReadString('\n')
		if err != nil {
			d.t.Fatalf("reading reply (have %q): %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// tryRead is read that reports an error instead of failing.
func (d *dialogue) tryRead() (string, error) {
	var lines []string
	for {
		l, err := d.r.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

func (d *dialogue) send(s string) {
	d.t.Helper()
	if _, err := io.WriteString(d.conn, s); err != nil {
		d.t.Fatalf("write %q: %v", s, err)
	}
}

// cmd sends line and returns the reply.
func (d *dialogue) cmd(line string) string {
	d.t.Helper()
	d.send(line + "\r\n")
	return d.read()
}

// expect sends line and checks the reply starts with prefix.
func (d *dialogue) expect(line, prefix string) string {
	d.t.Helper()
	got := d.cmd(line)
	if !strings.HasPrefix(got, prefix) {
		d.t.Fatalf("%q: got %q, want prefix %q", line, got, prefix)
	}
	return got
}

// startTLS issues STARTTLS and upgrades the connection.
func (d *dialogue) startTLS(cfg *tls.Config) error {
	d.t.Helper()
	d.expect("STARTTLS", "220 ")
	tc := tls.Client(d.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	d.conn = tc
	d.r = bufio.NewReader(tc)
	return nil
}

// greet reads the banner and sends EHLO, returning the EHLO reply.
func (d *dialogue) greet() string {
	d.t.Helper()
	if b := d.read(); !strings.HasPrefix(b, "220 ") {
		d.t.Fatalf("banner %q", b)
	}
	return d.expect("EHLO client.test", "250")
}

// modeDialogue connects to ts and sends EHLO, in "plaintext" or, for
// mode "tls", under STARTTLS (then EHLO again).
func modeDialogue(t testing.TB, ts *testServer, mode string) *dialogue {
	t.Helper()
	d := dial(t, ts.addr)
	d.greet()
	if mode == "tls" {
		if err := d.startTLS(ts.pki.clientConfig()); err != nil {
			t.Fatal(err)
		}
		d.expect("EHLO c.test", "250")
	}
	return d
}

// dataDialogue is modeDialogue, then MAIL, RCPT and DATA up to the 354.
func dataDialogue(t testing.TB, ts *testServer, mode string) *dialogue {
	t.Helper()
	d := modeDialogue(t, ts, mode)
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	d.expect("DATA", "354 ")
	return d
}

// sendMessage runs MAIL, RCPT, DATA and returns DATA's final reply.
func (d *dialogue) sendMessage(from, to, body string) string {
	d.t.Helper()
	d.expect("MAIL FROM:<"+from+">", "250 ")
	d.expect("RCPT TO:<"+to+">", "250 ")
	d.expect("DATA", "354 ")
	d.send(body + ".\r\n")
	return d.read()
}
