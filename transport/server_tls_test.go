package transport

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/policy"
)

// starttlsHandshake greets, EHLOs and runs STARTTLS with cfg, returning the
// handshake error.
func starttlsHandshake(t *testing.T, addr string, cfg *tls.Config) (*dialogue, error) {
	t.Helper()
	d := dial(t, addr)
	d.greet()
	d.expect("STARTTLS", "220 ")
	tc := tls.Client(d.conn, cfg)
	err := tc.Handshake()
	if err == nil {
		// TLS 1.3 client certificate and VerifyConnection failures on the
		// server surface at the client's first read.
		d.conn, d.r = tc, bufio.NewReader(tc)
		if _, err = tc.Write([]byte("EHLO c.test\r\n")); err == nil {
			_, err = d.tryRead()
		}
	}
	return d, err
}

// isRemoteAlert reports whether err is the TLS alert the peer sent with the
// given description. crypto/tls keeps its alert type unexported on the
// client side (a *net.OpError "remote error" wrapping it), so the
// description text is what identifies the alert number.
func isRemoteAlert(err error, desc string) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && oe.Err.Error() == "tls: "+desc
}

// TestLegacyTLSRefused: clients offering only TLS 1.0 or 1.1 fail the
// handshake (RFC 8996) and the log names the reason; a 1.3-only policy
// refuses 1.2 clients.
func TestLegacyTLSRefused(t *testing.T) {
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{}, pki)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		cfg := pki.clientConfig()
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, v
		_, err := starttlsHandshake(t, ts.addr, cfg)
		if err == nil {
			t.Errorf("%s client accepted", tls.VersionName(v))
			continue
		}
		// RFC 8446 §6.2 / RFC 5246 §7.2.2: the refusal is the
		// protocol_version alert (70), not internal_error (80).
		if !isRemoteAlert(err, "protocol version not supported") {
			t.Errorf("%s client: %v, want remote alert protocol_version (70)", tls.VersionName(v), err)
		}
	}
	waitFor(t, "failure logs", func() bool { return strings.Count(ts.log.String(), "result=failed") == 2 })
	logs := ts.log.String()
	if !strings.Contains(logs, "client offers only TLS 1.0; minimum is TLS 1.2") ||
		!strings.Contains(logs, "client offers only TLS 1.1, TLS 1.0; minimum is TLS 1.2") {
		t.Errorf("reasons not logged: %s", logs)
	}
	if n := len(ts.rec.all()); n != 0 {
		t.Fatalf("%d messages", n)
	}

	ts13 := startServer(t, &Server{TLSConfig: pki.serverConfigMin(tls.VersionTLS13)}, pki)
	cfg := pki.clientConfig()
	cfg.MaxVersion = tls.VersionTLS12
	if _, err := starttlsHandshake(t, ts13.addr, cfg); err == nil {
		t.Error("TLS 1.2 client accepted by 1.3-only policy")
	} else if !isRemoteAlert(err, "protocol version not supported") {
		t.Errorf("TLS 1.2 client of a 1.3-only policy: %v, want remote alert protocol_version (70)", err)
	}

	// Implicit TLS (RFC 8314) refuses the same way.
	tsImplicit := startServer(t, &Server{Kind: KindSubmissions, Authenticator: testTable(t)}, pki)
	old := pki.clientConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.Dial("tcp", tsImplicit.addr, old); err == nil {
		c.Close()
		t.Error("TLS 1.1 client accepted on the implicit-TLS port")
	} else if !isRemoteAlert(err, "protocol version not supported") {
		t.Errorf("implicit TLS, TLS 1.1 client: %v, want remote alert protocol_version (70)", err)
	}
	if _, err := starttlsHandshake(t, ts13.addr, pki.clientConfig()); err != nil {
		t.Errorf("TLS 1.3 client: %v", err)
	}
}

// TestCipherFloor: with a 256-bit floor a TLS 1.2 client offering only
// AES-128 suites is refused; one offering AES-256 gets it; a TLS 1.3 session
// never ends up below the floor.
func TestCipherFloor(t *testing.T) {
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{Inbound: policy.Inbound{MinCipherBits: 256}}, pki)
	weak := pki.clientConfig()
	weak.MaxVersion = tls.VersionTLS12
	weak.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	if _, err := starttlsHandshake(t, ts.addr, weak); err == nil {
		t.Error("AES-128-only client accepted with a 256-bit floor")
	} else if !isRemoteAlert(err, "handshake failure") {
		// RFC 5246 §7.4.1.3: no acceptable suite is handshake_failure (40).
		t.Errorf("AES-128-only client: %v, want remote alert handshake_failure (40)", err)
	}
	waitFor(t, "failure log", func() bool { return strings.Contains(ts.log.String(), "result=failed") })
	if !strings.Contains(ts.log.String(), "no cipher suite in common") {
		t.Errorf("reason not logged: %s", ts.log.String())
	}

	strong := pki.clientConfig()
	strong.MaxVersion = tls.VersionTLS12
	strong.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	d, err := starttlsHandshake(t, ts.addr, strong)
	if err != nil {
		t.Fatalf("AES-256 client: %v\n%s", err, ts.log.String())
	}
	if got := d.sendMessage("a@example.org", "b@example.net", "x\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA %q", got)
	}
	if m := ts.rec.all(); len(m) != 1 || m[0].env.TLS.Bits() != 256 || !strings.Contains(m[0].body, "(256/256 bits)") {
		t.Fatalf("message %+v", m)
	}

	// TLS 1.3: Go may pick TLS_AES_128_GCM_SHA256, which cannot be disabled
	// by configuration; the server must then refuse after the handshake.
	d13, err := starttlsHandshake(t, ts.addr, pki.clientConfig())
	if err == nil {
		cs := d13.conn.(*tls.Conn).ConnectionState()
		if CipherBits(cs.CipherSuite) < 256 {
			t.Errorf("TLS 1.3 session with %s accepted", tls.CipherSuiteName(cs.CipherSuite))
		}
	} else {
		waitFor(t, "floor log", func() bool { return strings.Contains(ts.log.String(), "below the 256-bit minimum") })
	}
}

// serverConfigMin is serverConfig with a minimum TLS version.
func (p *srvPKI) serverConfigMin(v uint16) *tls.Config {
	cfg := p.serverConfig()
	cfg.MinVersion = v
	return cfg
}

// serverConfigAuth is serverConfig with a client certificate policy set the
// crypto/tls way, as a hand-built configuration would.
func (p *srvPKI) serverConfigAuth(mode tls.ClientAuthType, cas *x509.CertPool) *tls.Config {
	cfg := p.serverConfig()
	cfg.ClientAuth, cfg.ClientCAs = mode, cas
	return cfg
}

// TestClientCertificates covers the five client certificate policies, set
// on the TLSConfig that certstore builds.
func TestClientCertificates(t *testing.T) {
	pki := newSrvPKI(t)
	partner := pki.ca.MustIssue(certtest.LeafOptions{CommonName: "partner.example", Client: true})
	rogueCA := certtest.MustCA("rogue")
	rogue := rogueCA.MustIssue(certtest.LeafOptions{CommonName: "rogue.example", Client: true})
	serverOnly := pki.ca.MustIssue(certtest.LeafOptions{CommonName: "noclientauth.example"}) // no clientAuth EKU

	withCert := func(l *certtest.Leaf) *tls.Config {
		c := pki.clientConfig()
		if l != nil {
			// Send it even when it does not chain to the CAs the server
			// names (Go's default selection would send nothing).
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &l.TLS, nil }
		}
		return c
	}
	type attempt struct {
		cert     *certtest.Leaf
		ok       bool
		verified bool
	}
	for _, c := range []struct {
		mode     certstore.ClientAuthPolicy
		attempts []attempt
	}{
		{certstore.ClientCertNone, []attempt{{nil, true, false}}},
		{certstore.ClientCertRequest, []attempt{{nil, true, false}, {partner, true, true}, {rogue, true, false}}},
		{certstore.ClientCertRequire, []attempt{{nil, false, false}, {rogue, true, false}, {partner, true, true}}},
		{certstore.ClientCertVerifyIfGiven, []attempt{{nil, true, false}, {rogue, false, false}, {serverOnly, false, false}, {partner, true, true}}},
		{certstore.ClientCertRequireVerified, []attempt{{nil, false, false}, {rogue, false, false}, {serverOnly, false, false}, {partner, true, true}}},
	} {
		t.Run(c.mode.String(), func(t *testing.T) {
			cfg, err := certstore.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pki.server.TLS, nil },
				certstore.TLSOptions{ClientAuth: c.mode, ClientCAs: pki.ca.Pool})
			if err != nil {
				t.Fatal(err)
			}
			ts := startServer(t, &Server{TLSConfig: cfg}, pki)
			for i, a := range c.attempts {
				d, err := starttlsHandshake(t, ts.addr, withCert(a.cert))
				if (err == nil) != a.ok {
					t.Fatalf("attempt %d: err %v, want ok=%v", i, err, a.ok)
				}
				if !a.ok {
					continue
				}
				if got := d.sendMessage("a@example.org", "b@example.net", "x\r\n"); !strings.HasPrefix(got, "250 ") {
					t.Fatalf("DATA %q", got)
				}
				msgs := ts.rec.all()
				env := msgs[len(msgs)-1].env
				if env.TLS.Verified != a.verified {
					t.Errorf("attempt %d: verified %v, want %v", i, env.TLS.Verified, a.verified)
				}
				if a.cert != nil && env.TLS.PeerSubject != a.cert.X509.Subject.String() {
					t.Errorf("attempt %d: subject %q", i, env.TLS.PeerSubject)
				}
				if a.verified && !strings.Contains(msgs[len(msgs)-1].body, "(client certificate CN=partner.example, verified)") {
					t.Errorf("Received header lacks the verified client certificate: %q", msgs[len(msgs)-1].body)
				}
			}
			if c.mode == certstore.ClientCertRequireVerified {
				waitFor(t, "failure logs", func() bool { return strings.Count(ts.log.String(), "result=failed") >= 3 })
				logs := ts.log.String()
				if !strings.Contains(logs, "client certificate required but none was sent") ||
					!strings.Contains(logs, `client certificate \"CN=rogue.example\" not verified`) {
					t.Errorf("reasons not logged: %s", logs)
				}
			}
			if want := "tls.client_auth=" + c.mode.String(); !strings.Contains(ts.log.String(), want) {
				t.Errorf("listening log lacks %s: %s", want, ts.log.String())
			}
		})
	}
}

// TestClientAuthFromTLSConfig: the client certificate policy set on a
// hand-built TLSConfig, or on the one a GetConfigForClient hook returns, is
// enforced, not replaced by a default; and the TLSConfig's MinVersion is
// the listener's minimum.
func TestClientAuthFromTLSConfig(t *testing.T) {
	pki := newSrvPKI(t)
	partner := pki.ca.MustIssue(certtest.LeafOptions{CommonName: "partner.example", Client: true})
	withPartner := pki.clientConfig()
	withPartner.Certificates = []tls.Certificate{partner.TLS}

	direct := pki.serverConfigAuth(tls.RequireAndVerifyClientCert, pki.ca.Pool)
	hooked := pki.serverConfig()
	hooked.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return pki.serverConfigAuth(tls.RequireAndVerifyClientCert, pki.ca.Pool), nil
	}
	for name, cfg := range map[string]*tls.Config{"TLSConfig": direct, "GetConfigForClient": hooked} {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, &Server{TLSConfig: cfg}, pki)
			if _, err := starttlsHandshake(t, ts.addr, pki.clientConfig()); err == nil {
				t.Fatal("client without a certificate accepted by a require-verified TLSConfig")
			}
			waitFor(t, "failure log", func() bool { return strings.Contains(ts.log.String(), "client certificate required but none was sent") })
			d, err := starttlsHandshake(t, ts.addr, withPartner)
			if err != nil {
				t.Fatalf("partner: %v", err)
			}
			if got := d.sendMessage("a@example.org", "b@example.net", "x\r\n"); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("DATA %q", got)
			}
			if m := ts.rec.all(); len(m) != 1 || !m[0].env.TLS.Verified {
				t.Fatalf("messages %+v", m)
			}
		})
	}
	if direct.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("the caller's TLSConfig was modified: ClientAuth %v", direct.ClientAuth)
	}
}

// TestHandshakeTimeout: a client that sends STARTTLS and then nothing is
// dropped after Timeouts.TLSHandshake, and the log says so.
func TestHandshakeTimeout(t *testing.T) {
	ts := startServer(t, &Server{Timeouts: ServerTimeouts{TLSHandshake: 200 * time.Millisecond}}, newSrvPKI(t))
	d := dial(t, ts.addr)
	d.greet()
	d.expect("STARTTLS", "220 ")
	start := time.Now()
	buf := make([]byte, 64)
	n, err := d.conn.Read(buf)
	if err == nil {
		t.Fatalf("read %q, want close", buf[:n])
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("closed after %v", el)
	}
	waitFor(t, "timeout log", func() bool { return strings.Contains(ts.log.String(), "handshake timed out after 200ms") })

	// Implicit TLS: a silent client is dropped too.
	ts2 := startServer(t, &Server{Kind: KindSubmissions, Authenticator: testTable(t), Timeouts: ServerTimeouts{TLSHandshake: 200 * time.Millisecond}}, newSrvPKI(t))
	c, err := net.Dial("tcp", ts2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("implicit TLS silent client: %v", err)
	}
	waitFor(t, "timeout log", func() bool { return strings.Contains(ts2.log.String(), "result=failed") })
}

// CipherName, from the table made once, names every suite as
// tls.CipherSuiteName does, and an unknown one as its hex form.
func TestCipherName(t *testing.T) {
	ids := []uint16{0x0a0a, 0xffff}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		ids = append(ids, cs.ID)
	}
	for _, id := range ids {
		if got, want := (&TLSInfo{CipherSuite: id}).CipherName(), tls.CipherSuiteName(id); got != want {
			t.Errorf("suite %#04x: %q, want %q", id, got, want)
		}
	}
	for id, want := range map[uint16]string{tls.TLS_AES_128_GCM_SHA256: "TLS_AES_128_GCM_SHA256", 0x0a0a: "0x0A0A", 0xffff: "0xFFFF"} {
		if got := (&TLSInfo{CipherSuite: id}).CipherName(); got != want {
			t.Errorf("suite %#04x named %q, want %q", id, got, want)
		}
	}
}
