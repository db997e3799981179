package certstore

import (
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore/certtest"
)

// stores returns a loaded Store with an ECDSA and one with an RSA certificate.
func stores(t *testing.T) (ecdsaStore, rsaStore *Store) {
	t.Helper()
	ca := certtest.MustCA("root")
	e := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}, Key: certtest.ECDSA})
	r := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}, Key: certtest.RSA})
	es, err := New(Source{Certificate: &e.TLS})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := New(Source{Certificate: &r.TLS})
	if err != nil {
		t.Fatal(err)
	}
	return es, rs
}

func TestTLSConfigFields(t *testing.T) {
	st, _ := stores(t)
	cfg, err := st.TLSConfig(TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %s", tls.VersionName(cfg.MinVersion))
	}
	if cfg.CurvePreferences != nil {
		t.Errorf("CurvePreferences narrowed to %v; Go's defaults (X25519MLKEM768 first) must stay", cfg.CurvePreferences)
	}
	if cfg.SessionTicketsDisabled {
		t.Error("session tickets disabled")
	}
	if cfg.GetCertificate == nil || cfg.Certificates != nil {
		t.Error("certificates not wired to the store")
	}
	if cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("ClientAuth %v", cfg.ClientAuth)
	}
	// Every configured suite is ECDHE with an AEAD cipher, per Go's own
	// description of it.
	for _, id := range cfg.CipherSuites {
		var found *tls.CipherSuite
		for _, cs := range tls.CipherSuites() {
			if cs.ID == id {
				found = cs
			}
		}
		if found == nil {
			t.Fatalf("suite %s is in Go's insecure list", tls.CipherSuiteName(id))
		}
		if !isAEADECDHE(id) || !slices.Contains(found.SupportedVersions, tls.VersionTLS12) {
			t.Errorf("suite %s is not an ECDHE AEAD TLS 1.2 suite", found.Name)
		}
	}
	if len(cfg.CipherSuites) != 6 {
		t.Errorf("%d suites, want the 6 ECDHE AES-GCM/ChaCha20 suites", len(cfg.CipherSuites))
	}
	// The config's suite list is a copy: changing it does not change the package default.
	cfg.CipherSuites[0] = tls.TLS_RSA_WITH_AES_128_CBC_SHA
	if CipherSuites()[0] == tls.TLS_RSA_WITH_AES_128_CBC_SHA {
		t.Error("CipherSuites shares its slice")
	}
}

func isAEADECDHE(id uint16) bool {
	switch id {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}

func TestTLSOptionsErrors(t *testing.T) {
	st, _ := stores(t)
	for _, o := range []TLSOptions{
		{MinVersion: tls.VersionTLS11},
		{MinVersion: tls.VersionTLS10},
		{MinVersion: 0x0200},
		{ClientAuth: ClientCertRequireVerified},
		{ClientAuth: ClientCertVerifyIfGiven},
		{ClientAuth: 99},
	} {
		if _, err := st.TLSConfig(o); !errors.Is(err, ErrInsecureConfig) {
			t.Errorf("%+v: got %v, want ErrInsecureConfig", o, err)
		}
	}
	if _, err := ServerTLSConfig(nil, TLSOptions{}); !errors.Is(err, ErrInsecureConfig) {
		t.Errorf("nil GetCertificate: %v", err)
	}
	ca := certtest.MustCA("c")
	for p, want := range map[ClientAuthPolicy]tls.ClientAuthType{
		ClientCertNone: tls.NoClientCert, ClientCertRequest: tls.RequestClientCert, ClientCertRequire: tls.RequireAnyClientCert,
		ClientCertVerifyIfGiven: tls.VerifyClientCertIfGiven, ClientCertRequireVerified: tls.RequireAndVerifyClientCert,
	} {
		cfg, err := st.TLSConfig(TLSOptions{ClientAuth: p, ClientCAs: ca.Pool})
		if err != nil || cfg.ClientAuth != want {
			t.Errorf("%s: %v %v", p, cfg.ClientAuth, err)
		}
		// ClientCAs reach the Config whenever a certificate is asked for,
		// so that a consumer can record whether it verified.
		if wantCAs := p != ClientCertNone; err == nil && (cfg.ClientCAs != nil) != wantCAs {
			t.Errorf("%s: ClientCAs set %v, want %v", p, cfg.ClientCAs != nil, wantCAs)
		}
		if p.TLSClientAuth() != want {
			t.Errorf("%s: TLSClientAuth %v, want %v", p, p.TLSClientAuth(), want)
		}
		if back, err := ClientAuthPolicyOf(want); err != nil || back != p {
			t.Errorf("ClientAuthPolicyOf(%v) = %v, %v; want %v", want, back, err, p)
		}
	}
	if _, err := ClientAuthPolicyOf(tls.ClientAuthType(99)); !errors.Is(err, ErrInsecureConfig) {
		t.Errorf("ClientAuthPolicyOf(99): %v, want ErrInsecureConfig", err)
	}
}

// TestClientAuthPolicyNames: every policy parses from its String form,
// case-insensitively; unknown names and values are reported.
func TestClientAuthPolicyNames(t *testing.T) {
	for p := ClientCertNone; p <= ClientCertRequireVerified; p++ {
		got, err := ParseClientAuthPolicy(" " + strings.ToUpper(p.String()) + " ")
		if err != nil || got != p {
			t.Errorf("%v: parsed %v, %v", p, got, err)
		}
	}
	if _, err := ParseClientAuthPolicy("sometimes"); err == nil {
		t.Error("unknown policy parsed")
	}
	if s := ClientAuthPolicy(7).String(); s != "ClientAuthPolicy(7)" {
		t.Errorf("String %q", s)
	}
	for _, c := range []struct {
		p                  ClientAuthPolicy
		requires, verifies bool
	}{
		{ClientCertNone, false, false},
		{ClientCertRequest, false, false},
		{ClientCertRequire, true, false},
		{ClientCertVerifyIfGiven, false, true},
		{ClientCertRequireVerified, true, true},
	} {
		if c.p.RequiresCertificate() != c.requires || c.p.VerifiesCertificate() != c.verifies {
			t.Errorf("%s: requires %v verifies %v", c.p, c.p.RequiresCertificate(), c.p.VerifiesCertificate())
		}
	}
}

// TestEffectiveMinVersion: zero is TLS 1.2 (RFC 9325, Section 3.1.1);
// anything else is kept.
func TestEffectiveMinVersion(t *testing.T) {
	for in, want := range map[uint16]uint16{0: tls.VersionTLS12, tls.VersionTLS13: tls.VersionTLS13, tls.VersionTLS10: tls.VersionTLS10} {
		if got := EffectiveMinVersion(in); got != want {
			t.Errorf("EffectiveMinVersion(%x) = %x, want %x", in, got, want)
		}
	}
}

// A client that speaks only TLS 1.0 or 1.1 is refused (RFC 8996).
func TestOldTLSRefused(t *testing.T) {
	st, _ := stores(t)
	cfg, _ := st.TLSConfig(TLSOptions{})
	srv := serve(t, cfg)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		old := insecureClient("")
		old.MinVersion, old.MaxVersion = tls.VersionTLS10, v
		if c, err := dial(t, srv.addr, old); err == nil {
			t.Fatalf("%s client accepted, negotiated %s", tls.VersionName(v), tls.VersionName(c.ConnectionState().Version))
		}
		if !waitFor(2*time.Second, func() bool {
			err := srv.lastError()
			return err != nil && strings.Contains(err.Error(), "unsupported versions")
		}) {
			t.Fatalf("no server-side version error: %v", srv.lastError())
		}
		// Control: the same client is accepted by a server that allows old
		// versions, so the refusal above is the configuration's doing.
		loose := cfg.Clone()
		loose.MinVersion = tls.VersionTLS10
		loose.CipherSuites = nil // AEAD suites need TLS 1.2
		if c, err := dial(t, serve(t, loose).addr, old); err != nil || c.ConnectionState().Version != v {
			t.Fatalf("control server refused %s: %v", tls.VersionName(v), err)
		}
	}
	if st, ok := srv.lastState(); ok {
		t.Fatalf("a handshake succeeded: %s", tls.VersionName(st.Version))
	}
	// Sanity: the same client allowed up to 1.2 is accepted.
	ok := insecureClient("")
	ok.MinVersion, ok.MaxVersion = tls.VersionTLS10, tls.VersionTLS12
	if _, err := dial(t, srv.addr, ok); err != nil {
		t.Fatal(err)
	}
}

// With TLS 1.2, only ECDHE + AEAD suites are negotiated: each one works when
// it is the client's only offer, and a client offering only CBC or static-RSA
// suites is refused.
func TestTLS12OnlyAEADECDHE(t *testing.T) {
	es, rs := stores(t)
	ecfg, _ := es.TLSConfig(TLSOptions{})
	rcfg, _ := rs.TLSConfig(TLSOptions{})
	esrv, rsrv := serve(t, ecfg), serve(t, rcfg)

	// Go's default TLS 1.2 client offer includes CBC suites; the server picks AEAD.
	for _, addr := range []string{esrv.addr, rsrv.addr} {
		c12 := insecureClient("")
		c12.MaxVersion = tls.VersionTLS12
		c, err := dial(t, addr, c12)
		if err != nil {
			t.Fatal(err)
		}
		cs := c.ConnectionState()
		if cs.Version != tls.VersionTLS12 || !isAEADECDHE(cs.CipherSuite) {
			t.Fatalf("negotiated %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
		}
	}
	for _, id := range CipherSuites() {
		addr := esrv.addr
		if cs := tls.CipherSuiteName(id); len(cs) > 14 && cs[:14] == "TLS_ECDHE_RSA_" {
			addr = rsrv.addr
		}
		c12 := insecureClient("")
		c12.MaxVersion = tls.VersionTLS12
		c12.CipherSuites = []uint16{id}
		c, err := dial(t, addr, c12)
		if err != nil {
			t.Fatalf("%s: %v", tls.CipherSuiteName(id), err)
		}
		if got := c.ConnectionState().CipherSuite; got != id {
			t.Fatalf("offered only %s, got %s", tls.CipherSuiteName(id), tls.CipherSuiteName(got))
		}
	}
	for _, bad := range [][]uint16{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_128_CBC_SHA},
		{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA},
	} {
		for _, addr := range []string{esrv.addr, rsrv.addr} {
			c12 := insecureClient("")
			c12.MaxVersion = tls.VersionTLS12
			c12.CipherSuites = bad
			if c, err := dial(t, addr, c12); err == nil {
				t.Fatalf("client offering only %v negotiated %s", bad, tls.CipherSuiteName(c.ConnectionState().CipherSuite))
			}
		}
	}
	// Control: Go's own default server suites do include ECDHE-CBC, so a
	// CBC-only client is accepted there; the refusal above is ours.
	loose := ecfg.Clone()
	loose.CipherSuites = nil
	cbc := insecureClient("")
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	if _, err := dial(t, serve(t, loose).addr, cbc); err != nil {
		t.Fatalf("control server refused ECDHE-CBC: %v", err)
	}
}

// The key exchange is not narrowed: a Go client preferring the post-quantum
// hybrid gets it, and TLS 1.2 still gets X25519.
func TestKeyExchangeDefaultsKept(t *testing.T) {
	st, _ := stores(t)
	cfg, _ := st.TLSConfig(TLSOptions{})
	srv := serve(t, cfg)
	for _, tc := range []struct {
		name   string
		prefs  []tls.CurveID
		maxV   uint16
		wantID tls.CurveID
	}{
		{"explicit pq preference", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, 0, tls.X25519MLKEM768},
		{"go default client", nil, 0, tls.X25519MLKEM768},
		{"x25519 only", []tls.CurveID{tls.X25519}, 0, tls.X25519},
		{"p256 only", []tls.CurveID{tls.CurveP256}, 0, tls.CurveP256},
		{"tls1.2", nil, tls.VersionTLS12, tls.X25519},
	} {
		cc := insecureClient("")
		cc.CurvePreferences = tc.prefs
		cc.MaxVersion = tc.maxV
		c, err := dial(t, srv.addr, cc)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := c.ConnectionState().CurveID; got != tc.wantID {
			t.Fatalf("%s: negotiated %v, want %v", tc.name, got, tc.wantID)
		}
		if sst, _ := srv.lastState(); sst.CurveID != tc.wantID {
			t.Fatalf("%s: server side says %v", tc.name, sst.CurveID)
		}
	}
}

func TestTLS13Only(t *testing.T) {
	st, _ := stores(t)
	cfg, err := st.TLSConfig(TLSOptions{MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)
	c12 := insecureClient("")
	c12.MaxVersion = tls.VersionTLS12
	if _, err := dial(t, srv.addr, c12); err == nil {
		t.Fatal("TLS 1.2 client accepted by a TLS 1.3-only config")
	}
	c, err := dial(t, srv.addr, insecureClient(""))
	if err != nil {
		t.Fatal(err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %s", tls.VersionName(v))
	}
}

// Session tickets are on: a second connection resumes.
func TestSessionResumption(t *testing.T) {
	st, _ := stores(t)
	cfg, _ := st.TLSConfig(TLSOptions{})
	srv := serve(t, cfg)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cc := insecureClient("mx.example.com")
		cc.MaxVersion = v
		cc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		first, err := dial(t, srv.addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		if first.ConnectionState().DidResume {
			t.Fatal("first connection resumed")
		}
		second, err := dial(t, srv.addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		if !second.ConnectionState().DidResume {
			t.Fatalf("%s: second connection did not resume", tls.VersionName(v))
		}
	}
}

// Each supported key type serves verified TLS 1.2 and 1.3 handshakes from
// files, with a client that checks the chain and the name.
func TestKeyTypesHandshake(t *testing.T) {
	ca := certtest.MustCA("root")
	dir := t.TempDir()
	for _, kt := range []struct {
		name string
		kt   certtest.KeyType
	}{{"rsa", certtest.RSA}, {"ecdsa", certtest.ECDSA}, {"ed25519", certtest.Ed25519}} {
		l := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}, Key: kt.kt})
		c, k := writePair(t, dir, kt.name, l)
		st, err := New(Source{CertFile: c, KeyFile: k})
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := st.TLSConfig(TLSOptions{})
		srv := serve(t, cfg)
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			cc := &tls.Config{ServerName: "mx.example.com", RootCAs: ca.Pool, MaxVersion: v}
			conn, err := dial(t, srv.addr, cc)
			if err != nil {
				t.Fatalf("%s %s: %v", kt.name, tls.VersionName(v), err)
			}
			cs := conn.ConnectionState()
			if cs.Version != v || len(cs.VerifiedChains) == 0 || peerSerial(conn) != serialOf(l) {
				t.Fatalf("%s %s: version %s, chains %d", kt.name, tls.VersionName(v), tls.VersionName(cs.Version), len(cs.VerifiedChains))
			}
			if v == tls.VersionTLS12 && !isAEADECDHE(cs.CipherSuite) {
				t.Fatalf("%s: suite %s", kt.name, tls.CipherSuiteName(cs.CipherSuite))
			}
		}
	}
}
