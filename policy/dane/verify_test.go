package dane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/policy"
)

// pki is a root CA, an intermediate CA under it, and certificates the
// intermediate issues (their chains carry the intermediate, not the root).
type pki struct {
	root  *certtest.CA
	inter *certtest.Leaf
	ica   *certtest.CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	root := certtest.MustCA("DANE test root")
	inter := root.MustIssue(certtest.LeafOptions{CommonName: "DANE test intermediate", IsCA: true, NotAfter: time.Now().Add(365 * 24 * time.Hour)})
	ica, err := inter.AsCA()
	if err != nil {
		t.Fatal(err)
	}
	return &pki{root: root, inter: inter, ica: ica}
}

func (p *pki) leaf(t *testing.T, o certtest.LeafOptions) *certtest.Leaf {
	t.Helper()
	l, err := p.ica.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.TLS.Certificate) != 2 {
		t.Fatalf("leaf chain has %d certificates, want leaf+intermediate", len(l.TLS.Certificate))
	}
	return l
}

// chain parses a leaf's TLS chain, optionally appending the root.
func (p *pki) chain(t *testing.T, l *certtest.Leaf, withRoot bool) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range l.TLS.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if withRoot {
		out = append(out, p.root.Cert)
	}
	return out
}

func mustRecord(t *testing.T, c *x509.Certificate, usage, sel, mt uint8) policy.TLSA {
	t.Helper()
	r, err := Record(c, usage, sel, mt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var allParams = []struct{ sel, mt uint8 }{{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}}

var mxNames = []string{"mx.example.com", "example.com"}

func TestDANEEEMatchesIgnoringNamesAndDates(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	good := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	wrongName := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"attacker.invalid"}})
	expired := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"elsewhere.invalid"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	// A self-signed certificate: DANE-EE needs no CA at all.
	self, err := certtest.SelfSigned("unrelated.invalid")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]*x509.Certificate{
		"good":        p.chain(t, good, false),
		"wrong name":  p.chain(t, wrongName, false),
		"expired":     p.chain(t, expired, false),
		"self-signed": {self.X509},
	}
	for name, chain := range cases {
		for _, pr := range allParams {
			rec := mustRecord(t, chain[0], UsageDANEEE, pr.sel, pr.mt)
			if err := VerifyChain(chain, []policy.TLSA{rec}, mxNames, now); err != nil {
				t.Errorf("%s, 3 %d %d: %v", name, pr.sel, pr.mt, err)
			}
			// Also with no names at all: DANE-EE never looks at them.
			if err := VerifyChain(chain, []policy.TLSA{rec}, nil, now); err != nil {
				t.Errorf("%s, 3 %d %d, no names: %v", name, pr.sel, pr.mt, err)
			}
		}
	}
	// The expired certificate is indeed expired for PKIX: the pass above is
	// due to DANE-EE, not to a lenient clock.
	if _, err := cases["expired"][0].Verify(x509.VerifyOptions{Roots: p.root.Pool, Intermediates: p.ica.Pool, CurrentTime: now}); err == nil {
		t.Fatal("expired test certificate verifies under PKIX; test is broken")
	}
}

func TestDANEEEMismatch(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	served := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}}), false)
	other := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}}), false)
	for _, pr := range allParams {
		rec := mustRecord(t, other[0], UsageDANEEE, pr.sel, pr.mt)
		err := VerifyChain(served, []policy.TLSA{rec}, mxNames, now)
		if !errors.Is(err, ErrNoMatch) {
			t.Errorf("3 %d %d for another key: got %v, want ErrNoMatch", pr.sel, pr.mt, err)
		}
		if got := ResultType(err); got != "validation-failure" {
			t.Errorf("ResultType = %q", got)
		}
	}
	// A DANE-EE record for the intermediate does not authenticate the leaf:
	// EE matches the leaf only.
	rec := mustRecord(t, served[1], UsageDANEEE, 1, 1)
	if err := VerifyChain(served, []policy.TLSA{rec}, mxNames, now); !errors.Is(err, ErrNoMatch) {
		t.Errorf("DANE-EE for intermediate: got %v, want ErrNoMatch", err)
	}
	// One matching record among non-matching ones is enough.
	good := mustRecord(t, served[0], UsageDANEEE, 1, 1)
	bad := mustRecord(t, other[0], UsageDANEEE, 1, 1)
	if err := VerifyChain(served, []policy.TLSA{bad, good}, mxNames, now); err != nil {
		t.Errorf("bad+good: %v", err)
	}
}

func TestDANETA(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	leaf := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	chain := p.chain(t, leaf, false)
	withRoot := p.chain(t, leaf, true)
	for _, pr := range allParams {
		// Anchor = the intermediate, which the server sends.
		rec := mustRecord(t, p.inter.X509, UsageDANETA, pr.sel, pr.mt)
		if err := VerifyChain(chain, []policy.TLSA{rec}, mxNames, now); err != nil {
			t.Errorf("2 %d %d intermediate: %v", pr.sel, pr.mt, err)
		}
		// Anchor = the root, sent by the server as RFC 7671 §5.2.2 requires.
		rec = mustRecord(t, p.root.Cert, UsageDANETA, pr.sel, pr.mt)
		if err := VerifyChain(withRoot, []policy.TLSA{rec}, mxNames, now); err != nil {
			t.Errorf("2 %d %d root in chain: %v", pr.sel, pr.mt, err)
		}
		// The root is not in the chain: not found, documented limitation.
		if err := VerifyChain(chain, []policy.TLSA{rec}, mxNames, now); !errors.Is(err, ErrNoMatch) {
			t.Errorf("2 %d %d root not sent: got %v, want ErrNoMatch", pr.sel, pr.mt, err)
		}
	}
	// Any one of the reference identifiers is enough (next-hop domain here).
	rec := mustRecord(t, p.inter.X509, UsageDANETA, 1, 1)
	nh := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"example.com"}}), false)
	if err := VerifyChain(nh, []policy.TLSA{rec}, mxNames, now); err != nil {
		t.Errorf("next-hop name: %v", err)
	}
	// Wildcards cover exactly one label (RFC 7672 §3.2.3).
	wild := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"*.example.com"}}), false)
	if err := VerifyChain(wild, []policy.TLSA{rec}, []string{"mx.example.com"}, now); err != nil {
		t.Errorf("wildcard: %v", err)
	}
	if err := VerifyChain(wild, []policy.TLSA{rec}, []string{"a.mx.example.com"}, now); !errors.Is(err, ErrHostMismatch) {
		t.Errorf("wildcard two labels deep: got %v, want ErrHostMismatch", err)
	}
}

func TestDANETAFailures(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	rec := mustRecord(t, p.inter.X509, UsageDANETA, 0, 1)

	wrong := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"attacker.invalid"}}), false)
	err := VerifyChain(wrong, []policy.TLSA{rec}, mxNames, now)
	if !errors.Is(err, ErrHostMismatch) || ResultType(err) != "certificate-host-mismatch" {
		t.Errorf("wrong name: got %v (%s), want ErrHostMismatch", err, ResultType(err))
	}
	// No reference identifiers: fail closed.
	good := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}}), false)
	if err := VerifyChain(good, []policy.TLSA{rec}, nil, now); !errors.Is(err, ErrHostMismatch) {
		t.Errorf("no names: got %v, want ErrHostMismatch", err)
	}

	expired := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-10 * time.Minute)}), false)
	err = VerifyChain(expired, []policy.TLSA{rec}, mxNames, now)
	if !errors.Is(err, ErrExpired) || ResultType(err) != "certificate-expired" {
		t.Errorf("expired: got %v (%s), want ErrExpired", err, ResultType(err))
	}
	// The same chain verifies when "now" is inside its validity: the clock
	// argument is used.
	if err := VerifyChain(expired, []policy.TLSA{rec}, mxNames, now.Add(-20*time.Minute)); err != nil {
		t.Errorf("expired chain at an earlier time: %v", err)
	}

	// The server sends our anchor but its leaf was issued by another CA.
	other := certtest.MustCA("other CA").MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	spliced := []*x509.Certificate{other.X509, p.inter.X509}
	err = VerifyChain(spliced, []policy.TLSA{rec}, mxNames, now)
	if !errors.Is(err, ErrNotTrusted) || ResultType(err) != "certificate-not-trusted" {
		t.Errorf("spliced chain: got %v (%s), want ErrNotTrusted", err, ResultType(err))
	}

	// Anchor of an unrelated CA: no match.
	unrelated := mustRecord(t, certtest.MustCA("unrelated").Cert, UsageDANETA, 1, 1)
	if err := VerifyChain(good, []policy.TLSA{unrelated}, mxNames, now); !errors.Is(err, ErrNoMatch) {
		t.Errorf("unrelated anchor: got %v, want ErrNoMatch", err)
	}
	// A DANE-TA record naming the leaf: the leaf is its own anchor; names
	// and dates are still checked (unlike DANE-EE).
	leafTA := mustRecord(t, good[0], UsageDANETA, 0, 1)
	if err := VerifyChain(good, []policy.TLSA{leafTA}, mxNames, now); err != nil {
		t.Errorf("TA = leaf, right name: %v", err)
	}
	if err := VerifyChain(good, []policy.TLSA{leafTA}, []string{"other.example"}, now); !errors.Is(err, ErrHostMismatch) {
		t.Errorf("TA = leaf, wrong name: got %v, want ErrHostMismatch", err)
	}
}

func TestUnusableRecordsAreNeverTrusted(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	chain := p.chain(t, p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}}), false)
	// These records all match the served certificates but are unusable for
	// SMTP: PKIX usages, unknown parameters, truncated digest.
	pkixEE := mustRecord(t, chain[0], UsagePKIXEE, 1, 1)
	pkixTA := mustRecord(t, p.inter.X509, UsagePKIXTA, 1, 1)
	unknownSel := mustRecord(t, chain[0], UsageDANEEE, 1, 1)
	unknownSel.Selector = 7
	short := mustRecord(t, chain[0], UsageDANEEE, 1, 1)
	short.Data = short.Data[:16]
	only := []policy.TLSA{pkixEE, pkixTA, unknownSel, short}
	err := VerifyChain(chain, only, mxNames, now)
	if !errors.Is(err, ErrNoUsableRecords) || ResultType(err) != "tlsa-invalid" {
		t.Errorf("only unusable: got %v (%s), want ErrNoUsableRecords", err, ResultType(err))
	}
	// Unusable matches plus a usable non-match: still no match.
	bad := mustRecord(t, p.root.Cert, UsageDANEEE, 1, 1)
	if err := VerifyChain(chain, append(only, bad), mxNames, now); !errors.Is(err, ErrNoMatch) {
		t.Errorf("unusable + usable mismatch: got %v, want ErrNoMatch", err)
	}
	if err := VerifyChain(nil, []policy.TLSA{bad}, mxNames, now); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("no certificate: got %v", err)
	}
}

func TestMatchNames(t *testing.T) {
	p := newPKI(t)
	cn := p.leaf(t, certtest.LeafOptions{CommonName: "MX.Example.COM"}) // no SAN: CN used
	san := p.leaf(t, certtest.LeafOptions{CommonName: "cn.example.com", DNSNames: []string{"mx.example.com", "*.relay.example"}})
	cases := []struct {
		cert  *x509.Certificate
		names []string
		want  bool
	}{
		{cn.X509, []string{"mx.example.com."}, true},
		{cn.X509, []string{"example.com"}, false},
		{san.X509, []string{"cn.example.com"}, false}, // CN ignored when SANs exist
		{san.X509, []string{"MX.EXAMPLE.COM"}, true},
		{san.X509, []string{"nope.example", "a.relay.example"}, true},
		{san.X509, []string{"relay.example"}, false},
		{san.X509, []string{"a.b.relay.example"}, false},
		{san.X509, []string{"", " "}, false},
		{san.X509, nil, false},
	}
	for _, c := range cases {
		if got := MatchNames(c.cert, c.names); got != c.want {
			t.Errorf("MatchNames(%v, %q) = %v, want %v", certNames(c.cert), c.names, got, c.want)
		}
	}
}

// handshake runs a real TLS handshake on loopback: the server presents
// chain; the client uses h.ClientConfig. It returns the client's error and
// the SNI the server saw.
func handshake(t *testing.T, cert tls.Certificate, h *Host, now func() time.Time) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sni := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sni <- "accept failed"
			return
		}
		defer c.Close()
		srv := tls.Server(c, &tls.Config{
			Certificates: []tls.Certificate{cert},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				sni <- hello.ServerName
				return nil, nil
			},
		})
		srv.SetDeadline(time.Now().Add(10 * time.Second))
		if srv.Handshake() == nil {
			// Let the client finish reading; then close.
			buf := make([]byte, 1)
			srv.Read(buf)
		}
	}()
	cfg, err := h.ClientConfig(&tls.Config{MinVersion: tls.VersionTLS12}, now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d tls.Dialer
	d.Config = cfg
	conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		conn.Close()
	}
	select {
	case s := <-sni:
		return s, err
	case <-ctx.Done():
		t.Fatal("server did not see a ClientHello")
		return "", nil
	}
}

func TestHandshakes(t *testing.T) {
	p := newPKI(t)
	good := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	wrongName := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"attacker.invalid"}})
	ee := mustRecord(t, good.X509, UsageDANEEE, 1, 1)
	ta := mustRecord(t, p.inter.X509, UsageDANETA, 0, 2)
	host := func(level policy.Level, recs ...policy.TLSA) *Host {
		return &Host{Name: "mx.example.com", TLSABase: "mx.example.com", Names: []string{"mx.example.com"}, Level: level, TLSA: recs}
	}
	cases := []struct {
		name string
		cert tls.Certificate
		host *Host
		want error
	}{
		{"EE match", good.TLS, host(policy.DANE, ee), nil},
		{"EE match, wrong-name cert", wrongName.TLS, host(policy.DANEOnly, mustRecord(t, wrongName.X509, UsageDANEEE, 0, 0)), nil},
		{"EE mismatch", wrongName.TLS, host(policy.DANE, ee), ErrNoMatch},
		{"TA match", good.TLS, host(policy.DANE, ta), nil},
		{"TA wrong name", wrongName.TLS, host(policy.DANE, ta), ErrHostMismatch},
		// Only unusable records: "encrypt", the handshake succeeds with any
		// certificate (RFC 7672 §2.2).
		{"encrypt", wrongName.TLS, host(policy.Encrypt), nil},
	}
	for _, c := range cases {
		sni, err := handshake(t, c.cert, c.host, nil)
		if c.want == nil && err != nil {
			t.Errorf("%s: handshake failed: %v", c.name, err)
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if sni != "mx.example.com" {
			t.Errorf("%s: server saw SNI %q, want the TLSA base domain", c.name, sni)
		}
	}
	// SNI is the TLSA base domain, not the MX host name, after CNAME expansion.
	h := host(policy.DANE, ee)
	h.TLSABase = "mx.provider.example"
	if sni, _ := handshake(t, good.TLS, h, nil); sni != "mx.provider.example" {
		t.Errorf("SNI = %q, want mx.provider.example", sni)
	}
	// DANE-TA checks dates with the clock it is given.
	late := func() time.Time { return time.Now().Add(48 * time.Hour) }
	if _, err := handshake(t, good.TLS, host(policy.DANE, ta), late); !errors.Is(err, ErrExpired) {
		t.Errorf("TA, clock after expiry: got %v, want ErrExpired", err)
	}
	// A DANE level without records is refused before dialing.
	if _, err := host(policy.DANE).ClientConfig(nil, nil); !errors.Is(err, ErrNoUsableRecords) {
		t.Errorf("DANE without records: got %v", err)
	}
	// A host with Err yields no config.
	bad := host(policy.DANEOnly)
	bad.Err = ErrDANERequired
	if _, err := bad.ClientConfig(nil, nil); !errors.Is(err, ErrDANERequired) {
		t.Errorf("host with Err: got %v", err)
	}
}

func TestClientConfigChainsVerifyConnection(t *testing.T) {
	p := newPKI(t)
	good := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	h := &Host{Name: "mx.example.com", Level: policy.DANE, TLSA: []policy.TLSA{mustRecord(t, good.X509, UsageDANEEE, 1, 1)}}
	called := 0
	base := &tls.Config{VerifyConnection: func(tls.ConnectionState) error { called++; return nil }}
	cfg, err := h.ClientConfig(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.InsecureSkipVerify || cfg.ServerName != "mx.example.com" || base.InsecureSkipVerify {
		t.Fatalf("config: skip=%v sni=%q base modified=%v", cfg.InsecureSkipVerify, cfg.ServerName, base.InsecureSkipVerify)
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{good.X509}}); err != nil || called != 1 {
		t.Fatalf("matching: err=%v called=%d", err, called)
	}
	other := p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	if err := cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{other.X509}}); !errors.Is(err, ErrNoMatch) || called != 1 {
		t.Fatalf("mismatch: err=%v called=%d (base hook must not run after a DANE failure)", err, called)
	}
}
