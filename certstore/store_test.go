package certstore

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore/certtest"
)

func TestSNISelection(t *testing.T) {
	ca := certtest.MustCA("root")
	dir := t.TempDir()
	def := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"default.example"}})
	exact := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	wild := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"*.example.org"}})
	// Hostnames overrides the names in the certificate.
	override := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"ignored.example"}})
	dualEC := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"dual.example"}, Key: certtest.ECDSA})
	dualRSA := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"dual.example"}, Key: certtest.RSA})

	var srcs []Source
	for _, p := range []struct {
		name  string
		l     *certtest.Leaf
		hosts []string
		def   bool
	}{
		{"exact", exact, nil, false}, // first, but not the default
		{"default", def, nil, true},
		{"wild", wild, nil, false},
		{"override", override, []string{"Submit.Example.NET."}, false},
		{"dual-ec", dualEC, nil, false},
		{"dual-rsa", dualRSA, nil, false},
	} {
		c, k := writePair(t, dir, p.name, p.l)
		srcs = append(srcs, Source{Name: p.name, CertFile: c, KeyFile: k, Hostnames: p.hosts, Default: p.def})
	}
	st := &Store{Sources: srcs}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}

	// Selection logic, including names a Go client would normalize before
	// sending (case, trailing dot), checked directly.
	for _, tc := range []struct {
		sni  string
		want *certtest.Leaf
	}{
		{"", def},
		{"mx.example.com", exact},
		{"MX.Example.COM", exact},
		{"mx.example.com.", exact},
		{"a.example.org", wild},
		{"A.EXAMPLE.ORG.", wild},
		{"a.b.example.org", def}, // a wildcard covers one label only
		{"example.org", def},     // nor the parent itself
		{"unknown.example", def},
		{"submit.example.net", override},
		{"ignored.example", def}, // Hostnames replaced the certificate's names
	} {
		c, err := st.GetCertificate(&tls.ClientHelloInfo{ServerName: tc.sni})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Leaf.SerialNumber.Text(16); got != serialOf(tc.want) {
			t.Errorf("GetCertificate(%q) = %s (%v), want %s", tc.sni, got, c.Leaf.DNSNames, serialOf(tc.want))
		}
	}

	// The same through real handshakes on loopback.
	cfg, err := st.TLSConfig(TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)
	for _, tc := range []struct {
		sni  string
		want *certtest.Leaf
	}{
		{"", def}, // no SNI at all, as most MTAs
		{"mx.example.com", exact},
		{"MX.EXAMPLE.COM", exact},
		{"relay.example.org", wild},
		{"a.b.example.org", def},
		{"nobody.example", def},
		{"submit.example.net", override},
		{"dual.example", dualEC},
	} {
		c, err := dial(t, srv.addr, insecureClient(tc.sni))
		if err != nil {
			t.Fatalf("sni %q: %v", tc.sni, err)
		}
		if got := peerSerial(c); got != serialOf(tc.want) {
			t.Errorf("handshake with SNI %q got serial %s, want %s", tc.sni, got, serialOf(tc.want))
		}
		st, _ := srv.lastState()
		if st.ServerName != strings.ToLower(tc.sni) && st.ServerName != tc.sni {
			t.Errorf("server saw SNI %q, client sent %q", st.ServerName, tc.sni)
		}
	}
	// A TLS 1.2 client that offers only RSA suites gets the RSA certificate
	// of the pair: selection honours what the client supports.
	rsaOnly := insecureClient("dual.example")
	rsaOnly.MaxVersion = tls.VersionTLS12
	rsaOnly.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	c, err := dial(t, srv.addr, rsaOnly)
	if err != nil {
		t.Fatal(err)
	}
	if got := peerSerial(c); got != serialOf(dualRSA) {
		t.Fatalf("RSA-only client got %s, want the RSA certificate %s", got, serialOf(dualRSA))
	}
}

func TestStoreConfigErrors(t *testing.T) {
	if err := (&Store{}).Reload(); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("empty store: %v", err)
	}
	if _, err := (&Store{}).GetCertificate(&tls.ClientHelloInfo{}); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("unloaded store: %v", err)
	}
	a, _ := GenerateSelfSigned([]string{"a.example"}, time.Hour)
	b, _ := GenerateSelfSigned([]string{"b.example"}, time.Hour)
	err := (&Store{Sources: []Source{{Certificate: a, Default: true}, {Certificate: b, Default: true}}}).Reload()
	if err == nil || !strings.Contains(err.Error(), "Default") {
		t.Fatalf("two defaults: %v", err)
	}
	err = (&Store{Sources: []Source{{Name: "x", Certificate: a}, {Name: "x", Certificate: b}}}).Reload()
	if err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate names: %v", err)
	}
	// Every failing Source is reported, each naming its file.
	dir := t.TempDir()
	ca := certtest.MustCA("root")
	exp := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"e.example"}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	ec, ek := writePair(t, dir, "expired", exp)
	err = (&Store{Sources: []Source{{CertFile: ec, KeyFile: ek}, {CertFile: dir + "/missing.crt", KeyFile: dir + "/missing.key"}}}).Reload()
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), ec) || !strings.Contains(err.Error(), "missing.crt") {
		t.Fatalf("joined errors: %v", err)
	}
}

// Reload swaps certificates for new handshakes only; an established
// connection keeps working with the certificate it negotiated; a failed
// reload keeps the previous set and says why.
func TestReload(t *testing.T) {
	ca := certtest.MustCA("root")
	dir := t.TempDir()
	first := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	second := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	certFile, keyFile := writePair(t, dir, "mx", first)

	var logs syncBuffer
	st := &Store{Sources: []Source{{CertFile: certFile, KeyFile: keyFile}}, Logger: newLogger(&logs)}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	cfg, err := st.TLSConfig(TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)
	old, err := dial(t, srv.addr, insecureClient(""))
	if err != nil {
		t.Fatal(err)
	}
	if got := peerSerial(old); got != serialOf(first) {
		t.Fatalf("before reload: %s, want %s", got, serialOf(first))
	}

	writePair(t, dir, "mx", second)
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, srv.addr, insecureClient(""))
	if err != nil {
		t.Fatal(err)
	}
	if got := peerSerial(c); got != serialOf(second) {
		t.Fatalf("after reload: %s, want %s", got, serialOf(second))
	}
	// The connection opened before the reload is untouched.
	if err := echo(old); err != nil {
		t.Fatalf("old connection broken by reload: %v", err)
	}
	if got := peerSerial(old); got != serialOf(first) {
		t.Fatalf("old connection now reports %s", got)
	}

	// Failed reloads: an expired certificate, then a key from another pair.
	expired := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	writePair(t, dir, "mx", expired)
	err = st.Reload()
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("reload of expired certificate: %v", err)
	}
	third := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	writeFile(t, certFile, third.CertPEM)
	writeFile(t, keyFile, first.KeyPEM)
	err = st.Reload()
	if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("reload of mismatched pair: %v", err)
	}
	c, err = dial(t, srv.addr, insecureClient("mx.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if got := peerSerial(c); got != serialOf(second) {
		t.Fatalf("after failed reloads the server presents %s, want the previous %s", got, serialOf(second))
	}
	if !strings.Contains(logs.String(), "reload failed") {
		t.Fatalf("failed reload not logged:\n%s", logs.String())
	}
}

func TestWatch(t *testing.T) {
	ca := certtest.MustCA("root")
	dir := t.TempDir()
	first := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	second := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	certFile, keyFile := writePair(t, dir, "mx", first)
	var logs syncBuffer
	st := &Store{Sources: []Source{{CertFile: certFile, KeyFile: keyFile}}, Logger: newLogger(&logs)}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := st.TLSConfig(TLSOptions{})
	srv := serve(t, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Watch(ctx, 20*time.Millisecond) }()
	defer func() {
		cancel()
		<-done
	}()

	serial := func() string {
		c, err := dial(t, srv.addr, insecureClient(""))
		if err != nil {
			t.Fatal(err)
		}
		return peerSerial(c)
	}
	// Nothing changed: no reload.
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(logs.String(), "files changed") {
		t.Fatalf("reloaded without a change:\n%s", logs.String())
	}
	// Rewriting identical content (a touch) is not a change either.
	writePair(t, dir, "mx", first)
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(logs.String(), "files changed") {
		t.Fatalf("reloaded on identical content:\n%s", logs.String())
	}

	writePair(t, dir, "mx", second)
	if !waitFor(5*time.Second, func() bool { return st.Certificate(certFile).Leaf.SerialNumber.Cmp(second.X509.SerialNumber) == 0 }) {
		t.Fatalf("watch did not reload:\n%s", logs.String())
	}
	if got := serial(); got != serialOf(second) {
		t.Fatalf("after watch reload: %s, want %s", got, serialOf(second))
	}

	// A broken change is logged and the previous certificate stays. (Count
	// the failures: writing a pair is two renames, and a poll between them
	// may already have logged one.)
	failures := func() int { return strings.Count(logs.String(), "reload after change failed") }
	before := failures()
	writeFile(t, keyFile, first.KeyPEM)
	if !waitFor(5*time.Second, func() bool { return failures() > before }) {
		t.Fatalf("failed reload not logged:\n%s", logs.String())
	}
	if got := serial(); got != serialOf(second) {
		t.Fatalf("after failed watch reload: %s, want %s", got, serialOf(second))
	}
	// Completing the pair is picked up.
	third := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	writePair(t, dir, "mx", third)
	if !waitFor(5*time.Second, func() bool { return st.Certificate(certFile).Leaf.SerialNumber.Cmp(third.X509.SerialNumber) == 0 }) {
		t.Fatalf("watch did not reload the repaired pair:\n%s", logs.String())
	}

	cancel()
	select {
	case err := <-done:
		done <- err // for the deferred receive
		if err != nil {
			t.Fatalf("Watch returned %v after cancel", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not stop when its context ended")
	}
}

func TestExpiring(t *testing.T) {
	root := certtest.MustCA("root")
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	soon := root.MustIssue(certtest.LeafOptions{DNSNames: []string{"soon.example"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	later := root.MustIssue(certtest.LeafOptions{DNSNames: []string{"later.example"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(100 * 24 * time.Hour)})
	interLeaf := root.MustIssue(certtest.LeafOptions{CommonName: "inter", IsCA: true, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 24 * time.Hour)})
	inter, _ := interLeaf.AsCA()
	chained := inter.MustIssue(certtest.LeafOptions{DNSNames: []string{"chained.example"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(200 * 24 * time.Hour)})
	dir := t.TempDir()
	sc, sk := writePair(t, dir, "soon", soon)
	lc, lk := writePair(t, dir, "later", later)
	cc, ck := writePair(t, dir, "chained", chained)
	st := &Store{
		Sources: []Source{{Name: "soon", CertFile: sc, KeyFile: sk}, {Name: "later", CertFile: lc, KeyFile: lk}, {Name: "chained", CertFile: cc, KeyFile: ck}},
		Now:     func() time.Time { return clock },
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	got := st.Expiring(30 * 24 * time.Hour)
	if len(got) != 2 {
		t.Fatalf("Expiring(30d) = %+v, want soon and the intermediate", got)
	}
	if got[0].Name != "soon" || got[0].File != sc || got[0].Depth != 0 || got[0].Remaining != 10*24*time.Hour ||
		!got[0].NotAfter.Equal(now.Add(10*24*time.Hour)) || len(got[0].Hostnames) != 1 || got[0].Hostnames[0] != "soon.example" ||
		got[0].Serial != serialOf(soon) || !strings.Contains(got[0].Subject, "soon.example") {
		t.Fatalf("first entry %+v", got[0])
	}
	if got[1].Name != "chained" || got[1].Depth != 1 || got[1].Remaining != 20*24*time.Hour || !strings.Contains(got[1].Subject, "inter") {
		t.Fatalf("second entry %+v", got[1])
	}
	if n := len(st.Expiring(24 * time.Hour)); n != 0 {
		t.Fatalf("Expiring(1d) returned %d entries", n)
	}
	if n := len(st.Expiring(365 * 24 * time.Hour)); n != 4 {
		t.Fatalf("Expiring(1y) returned %d entries, want 4", n)
	}
	// Eleven days later the first one has expired while loaded.
	clock = now.Add(11 * 24 * time.Hour)
	got = st.Expiring(0)
	if len(got) != 1 || got[0].Name != "soon" || got[0].Remaining != -24*time.Hour {
		t.Fatalf("after expiry: %+v", got)
	}
	// And a reload now refuses it.
	if err := st.Reload(); !errors.Is(err, ErrExpired) {
		t.Fatalf("reload with expired certificate: %v", err)
	}
}

// Outbound mutual TLS: the client presents the Store's certificate through
// ClientCertificate to a server that requires and verifies one.
func TestClientCertificateMutualTLS(t *testing.T) {
	serverCA := certtest.MustCA("server root")
	clientCA := certtest.MustCA("partner root")
	srvLeaf := serverCA.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.partner.example"}})
	srvStore, err := New(Source{Certificate: &srvLeaf.TLS})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := srvStore.TLSConfig(TLSOptions{ClientAuth: ClientCertRequireVerified, ClientCAs: clientCA.Pool})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)

	good := clientCA.MustIssue(certtest.LeafOptions{DNSNames: []string{"out.example.com"}, Client: true})
	rogue := certtest.MustCA("rogue").MustIssue(certtest.LeafOptions{DNSNames: []string{"out.example.com"}, Client: true})
	dir := t.TempDir()
	gc, gk := writePair(t, dir, "good", good)
	rc, rk := writePair(t, dir, "rogue", rogue)
	clients := &Store{Sources: []Source{{Name: "partner", CertFile: gc, KeyFile: gk}, {Name: "rogue", CertFile: rc, KeyFile: rk}}}
	if err := clients.Reload(); err != nil {
		t.Fatal(err)
	}
	client := func(name string) *tls.Config {
		c := &tls.Config{ServerName: "mx.partner.example", RootCAs: serverCA.Pool}
		if name != "" {
			c.GetClientCertificate = clients.ClientCertificate(name)
		}
		return c
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cc := client("partner")
		cc.MaxVersion = v
		if _, err := dial(t, srv.addr, cc); err != nil {
			t.Fatalf("%s with the partner certificate: %v", tls.VersionName(v), err)
		}
		st, _ := srv.lastState()
		if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].SerialNumber.Cmp(good.X509.SerialNumber) != 0 || len(st.VerifiedChains) == 0 {
			t.Fatalf("server did not see the verified partner certificate: %+v", st.PeerCertificates)
		}
	}
	// A reload of the client Store applies to the next outbound connection.
	renewed := clientCA.MustIssue(certtest.LeafOptions{DNSNames: []string{"out.example.com"}, Client: true})
	writePair(t, dir, "good", renewed)
	if err := clients.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, srv.addr, client("partner")); err != nil {
		t.Fatal(err)
	}
	if st, _ := srv.lastState(); st.PeerCertificates[0].SerialNumber.Cmp(renewed.X509.SerialNumber) != 0 {
		t.Fatal("server did not see the renewed client certificate")
	}
	if _, err := dial(t, srv.addr, client("")); err == nil {
		t.Fatal("client without certificate accepted")
	}
	if _, err := dial(t, srv.addr, client("rogue")); err == nil {
		t.Fatal("client with a certificate from an unknown CA accepted")
	}
	if !waitFor(2*time.Second, func() bool { return srv.lastError() != nil }) {
		t.Fatal("server recorded no handshake failure")
	}
	if _, err := dial(t, srv.addr, client("nosuch")); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Fatalf("unknown client certificate name: %v", err)
	}
}

func TestFallback(t *testing.T) {
	def, _ := GenerateSelfSigned([]string{"default.example"}, time.Hour)
	acme, _ := GenerateSelfSigned([]string{"mx.example.com"}, time.Hour)
	st, err := New(Source{Certificate: def})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	primary := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		asked = append(asked, h.ServerName)
		mu.Unlock()
		if h.ServerName == "mx.example.com" {
			return acme, nil
		}
		return nil, errors.New("acme/autocert: host not configured")
	}
	cfg, err := ServerTLSConfig(st.Fallback(primary), TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)
	for _, tc := range []struct {
		sni  string
		want *tls.Certificate
	}{{"", def}, {"mx.example.com", acme}, {"other.example", def}} {
		c, err := dial(t, srv.addr, insecureClient(tc.sni))
		if err != nil {
			t.Fatal(err)
		}
		if got := peerSerial(c); got != tc.want.Leaf.SerialNumber.Text(16) {
			t.Fatalf("sni %q: got %s", tc.sni, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(asked, ",") != "mx.example.com,other.example" {
		t.Fatalf("primary asked for %q; a client without SNI must not reach it", asked)
	}
}
