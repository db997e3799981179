package transport

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailtls/mailtls/policy"
)

func bcryptLine(t testing.TB, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h)
}

func testTable(t testing.TB) *BcryptTable {
	t.Helper()
	tab, err := ParseBcryptTable("users", strings.NewReader("# users\n\n"+bcryptLine(t, "alice", "wonderland")+"\n"+bcryptLine(t, "bob", "builder")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestBcryptTable(t *testing.T) {
	tab := testTable(t)
	ctx := context.Background()
	if tab.Len() != 2 {
		t.Fatalf("Len %d", tab.Len())
	}
	if u := tab.Users(); len(u) != 2 || u[0] != "alice" || u[1] != "bob" {
		t.Fatalf("Users %q, want [alice bob]", u)
	}
	if err := tab.Authenticate(ctx, "alice", "wonderland"); err != nil {
		t.Errorf("good password: %v", err)
	}
	for _, c := range [][2]string{{"alice", "wrong"}, {"carol", "wonderland"}, {"", ""}} {
		if err := tab.Authenticate(ctx, c[0], c[1]); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("%v: err %v, want ErrAuthFailed", c, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := tab.Authenticate(cctx, "alice", "wonderland"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrAuthFailed) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

// TestCheckBcryptCost: the limit's edge, which the parse tests cannot
// reach cheaply (a table at cost 14 hashes its dummy for a second).
func TestCheckBcryptCost(t *testing.T) {
	for c, ok := range map[int]bool{bcrypt.MinCost: true, bcrypt.DefaultCost: true, MaxBcryptCost: true, MaxBcryptCost + 1: false, bcrypt.MaxCost: false} {
		if err := checkBcryptCost(c); (err == nil) != ok {
			t.Errorf("cost %d: %v, want accepted %v", c, err, ok)
		}
	}
}

func TestParseBcryptTableErrors(t *testing.T) {
	good := bcryptLine(t, "u", "p")
	for _, c := range []struct{ in, want string }{
		{"nocolon\n", "users line 1: want user:bcrypt-hash"},
		{"# c\n:" + good[2:] + "\n", "users line 2: empty user name"},
		{good + "\n" + good + "\n", `users line 2: duplicate user "u"`},
		{"\n\nx:plaintext\n", `users line 3: user "x": not a bcrypt hash`},
		// A cost a client could make the server pay for at every AUTH
		// (the fuzz target found cost 24 hanging the parse, which hashes
		// the unknown-user dummy at the table's highest cost).
		{"a:" + strings.Replace(good[2:], "$04$", "$15$", 1) + "\n", `users line 1: user "a": bcrypt cost 15 is above the maximum 14`},
		{"a:" + strings.Replace(good[2:], "$04$", "$31$", 1) + "\n", `bcrypt cost 31 is above the maximum 14`},
	} {
		_, err := ParseBcryptTable("users", strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want %q", c.in, err, c.want)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(p, []byte(good+"\nbad line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBcryptTable(p); err == nil || !strings.Contains(err.Error(), p+" line 2") {
		t.Errorf("LoadBcryptTable: %v", err)
	}
	if _, err := LoadBcryptTable(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file loaded")
	}
}

// authServer starts a submission server with alice/wonderland and a
// settable clock.
func authServer(t *testing.T, kind ListenerKind, maxFailures int) (*testServer, func(time.Duration)) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := &Server{
		Kind:            kind,
		Authenticator:   testTable(t),
		AuthMaxFailures: maxFailures,
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		},
	}
	ts := startServer(t, s, newSrvPKI(t))
	return ts, func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
}

// TestAuthOnlyUnderTLS: AUTH is refused in plaintext with 538 5.7.11,
// advertised and accepted under TLS (PLAIN and LOGIN), bad credentials get
// 535 5.7.8, and submission requires AUTH before MAIL (RFC 4954 §6).
func TestAuthOnlyUnderTLS(t *testing.T) {
	ts, _ := authServer(t, KindSubmission, 3)
	d := dial(t, ts.addr)
	if ehlo := d.greet(); strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH advertised in plaintext: %q", ehlo)
	}
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "538 5.7.11 Encryption required for requested authentication mechanism")
	d.expect("AUTH LOGIN", "538 5.7.11 ")
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	ehlo := d.expect("EHLO c.test", "250")
	if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO under TLS: %q", ehlo)
	}
	d.expect("MAIL FROM:<alice@example.org>", "530 5.7.0 Authentication required")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wrong"), "535 5.7.8 ")
	d.expect("AUTH PLAIN "+b64("bob\x00alice\x00wonderland"), "535 5.7.8 ") // authzid differs
	// RFC 4954 §6: "235 2.7.0 Authentication Succeeded".
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 2.7.0 Authentication successful")
	// RFC 4954 §4: after a successful AUTH, further AUTH commands get 503.
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "503 5.5.1 ")
	d.expect("AUTH LOGIN", "503 5.5.1 ")
	if got := d.sendMessage("alice@example.org", "r@example.net", "Subject: x\r\n\r\nx\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA %q", got)
	}
	msgs := ts.rec.all()
	if len(msgs) != 1 || msgs[0].env.AuthIdentity != "alice" || !strings.Contains(msgs[0].body, "with ESMTPSA id") {
		t.Fatalf("deliveries %+v", msgs)
	}

	// LOGIN, with and without initial response, on fresh connections.
	for _, ir := range []bool{false, true} {
		d := dial(t, ts.addr)
		d.greet()
		if err := d.startTLS(ts.pki.clientConfig()); err != nil {
			t.Fatal(err)
		}
		d.expect("EHLO c.test", "250")
		if ir {
			d.expect("AUTH LOGIN "+b64("bob"), "334 "+b64("Password:"))
		} else {
			d.expect("AUTH LOGIN", "334 "+b64("Username:"))
			d.expect(b64("bob"), "334 "+b64("Password:"))
		}
		d.expect(b64("builder"), "235 2.7.0 Authentication successful")
		d.expect("MAIL FROM:<bob@example.org>", "250 ")
	}
}

// TestAuthRateLimit: after AuthMaxFailures failures from an address within
// the window, AUTH gets 454 4.7.0 even with good credentials; after the
// window it works again.
func TestAuthRateLimit(t *testing.T) {
	ts, advance := authServer(t, KindSubmission, 2)
	d := dial(t, ts.addr)
	d.greet()
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO c.test", "250")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00x"), "535 5.7.8 ")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00y"), "535 5.7.8 ")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "454 4.7.0 Too many failed authentication attempts")
	// A new connection from the same address is limited too.
	d2 := dial(t, ts.addr)
	d2.greet()
	if err := d2.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d2.expect("EHLO c.test", "250")
	d2.expect("AUTH LOGIN", "454 4.7.0 ")
	advance(DefaultAuthFailureWindow)
	d2.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
	if !strings.Contains(ts.log.String(), "smtp auth refused: too many failures") {
		t.Error("rate limiting not logged")
	}
}

// TestAuthBackendError: an Authenticator error other than ErrAuthFailed is
// a temporary failure (454 4.7.0) and does not leak its text.
func TestAuthBackendError(t *testing.T) {
	s := &Server{Authenticator: AuthenticatorFunc(func(context.Context, string, string) error {
		return errors.New("ldap://10.0.0.1 unreachable")
	})}
	ts := startServer(t, s, newSrvPKI(t))
	d := dial(t, ts.addr)
	d.greet()
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO c.test", "250")
	if got := d.expect("AUTH PLAIN "+b64("\x00a\x00b"), "454 4.7.0 Temporary authentication failure"); strings.Contains(got, "ldap") {
		t.Errorf("leaked: %q", got)
	}
	// MX kind: AUTH optional, MAIL works without it.
	d.expect("MAIL FROM:<a@example.org>", "250 ")
}

// TestSubmissionsImplicitTLS: RFC 8314 implicit TLS: handshake first, no
// STARTTLS offered, AUTH offered.
func TestSubmissionsImplicitTLS(t *testing.T) {
	ts, _ := authServer(t, KindSubmissions, 2)
	d := dialTLS(t, ts.addr, ts.pki.clientConfig())
	ehlo := d.greet()
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || !strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO %q", ehlo)
	}
	d.expect("STARTTLS", "502 ")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
	if got := d.sendMessage("alice@example.org", "r@example.net", "Subject: x\r\n\r\nx\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA %q", got)
	}
	if msgs := ts.rec.all(); len(msgs) != 1 || msgs[0].env.TLS == nil {
		t.Fatalf("deliveries %+v", msgs)
	}
	if !strings.Contains(ts.log.String(), "kind=submissions result=ok") {
		t.Errorf("handshake log: %s", ts.log.String())
	}
}

// TestServerConfigErrors: strict zero values refuse unsafe configurations.
func TestServerConfigErrors(t *testing.T) {
	pki := newSrvPKI(t)
	rec := &recorder{}
	cases := []struct {
		name string
		s    *Server
		want string
	}{
		{"nil handler", &Server{TLSConfig: pki.serverConfig()}, "Handler is nil"},
		{"no TLS but TLS required", &Server{Handler: rec}, "TLSConfig is nil but the inbound policy requires TLS"},
		{"submission without authenticator", &Server{Handler: rec, Kind: KindSubmission, TLSConfig: pki.serverConfig()}, "Authenticator is nil"},
		{"submission without TLS", &Server{Handler: rec, Kind: KindSubmission, Authenticator: testTable(t), Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, "needs a TLSConfig"},
		{"verified without CAs", &Server{Handler: rec, TLSConfig: pki.serverConfigAuth(tls.RequireAndVerifyClientCert, nil)}, "ClientCAs is nil"},
		{"verify-if-given without CAs", &Server{Handler: rec, TLSConfig: pki.serverConfigAuth(tls.VerifyClientCertIfGiven, nil)}, "ClientCAs is nil"},
		{"unknown client auth", &Server{Handler: rec, TLSConfig: pki.serverConfigAuth(tls.ClientAuthType(42), nil)}, "unknown tls.ClientAuthType"},
		{"max version below floor", &Server{Handler: rec, TLSConfig: &tls.Config{Certificates: pki.serverConfig().Certificates, MaxVersion: tls.VersionTLS11}}, "MaxVersion TLS 1.1 is below"},
	}
	for _, c := range cases {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = c.s.Serve(l)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if _, aerr := l.Accept(); aerr == nil {
			t.Errorf("%s: listener left open", c.name)
		}
	}
}
