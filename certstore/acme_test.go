package certstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/mailtls/mailtls/certstore/certtest"
)

// These tests never reach an ACME server. The Manager's directory is
// http://127.0.0.1:1/ (nothing listens there) and its HTTP client dials
// through loopbackDialer, which records every address, refuses anything that
// is not loopback and fails the test if asked to.

// loopbackDialer records the addresses the ACME client tries to reach.
type loopbackDialer struct {
	t     *testing.T
	mu    sync.Mutex
	addrs []string
}

func (d *loopbackDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		d.t.Errorf("ACME client tried to reach %s, which is not loopback", addr)
		return nil, fmt.Errorf("test: refusing non-loopback address %s", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *loopbackDialer) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

// autocertCacheEntry encodes a certificate the way autocert's cachePut does
// (x/crypto/acme/autocert, Manager.cachePut): the private key as an
// "EC PRIVATE KEY" (SEC1) PEM block, then the chain as CERTIFICATE blocks.
// The entry is stored under the bare domain for an ECDSA certificate
// (certKey.String; "+rsa" is appended for RSA ones).
func autocertCacheEntry(t *testing.T, l *certtest.Leaf) []byte {
	t.Helper()
	key, ok := l.TLS.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("want an ECDSA key, got %T", l.TLS.PrivateKey)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	for _, c := range l.TLS.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return out
}

const (
	acmeHost    = "mx.example.com"  // in HostPolicy, certificate in the cache
	acmeNewHost = "new.example.com" // in HostPolicy, nothing cached: autocert must ask the CA
	storeHost   = "other.example.org"
)

type acmeFixture struct {
	ca                   *certtest.CA
	acmeLeaf, def, other *certtest.Leaf
	store                *Store
	logs                 *syncBuffer
	dialer               *loopbackDialer
	manager              *autocert.Manager
	cacheDir             string
}

func newACMEFixture(t *testing.T) *acmeFixture {
	t.Helper()
	f := &acmeFixture{ca: certtest.MustCA("acme test root"), logs: &syncBuffer{}, dialer: &loopbackDialer{t: t}}
	f.acmeLeaf = f.ca.MustIssue(certtest.LeafOptions{DNSNames: []string{acmeHost}, Key: certtest.ECDSA,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	f.def = f.ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"default.example.net"}})
	f.other = f.ca.MustIssue(certtest.LeafOptions{DNSNames: []string{storeHost}})
	f.store = &Store{
		Sources: []Source{{Name: "other", Certificate: &f.other.TLS}, {Name: "default", Certificate: &f.def.TLS, Default: true}},
		Logger:  newLogger(f.logs),
	}
	if err := f.store.Reload(); err != nil {
		t.Fatal(err)
	}
	f.cacheDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(f.cacheDir, acmeHost), autocertCacheEntry(t, f.acmeLeaf), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := NewACMEManager(ACMEOptions{
		Hosts:        []string{acmeHost, acmeNewHost},
		CacheDir:     f.cacheDir,
		AcceptTOS:    true,
		DirectoryURL: "http://127.0.0.1:1/",
		HTTPClient: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{Proxy: nil, DialContext: f.dialer.dial},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.manager = m
	return f
}

// TestACMEHandshakes does real TLS handshakes on loopback against the
// Config built by ACMETLSConfig and checks, by serial number, which
// certificate each kind of client gets.
func TestACMEHandshakes(t *testing.T) {
	f := newACMEFixture(t)
	cfg, err := f.store.ACMETLSConfig(f.manager, TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)

	t.Run("sni in host policy gets the cached ACME certificate, verified, TLS 1.3", func(t *testing.T) {
		// A verifying client: the chain and the name must be right, not
		// just the serial.
		c, err := dial(t, srv.addr, &tls.Config{ServerName: acmeHost, RootCAs: f.ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := peerSerial(c), serialOf(f.acmeLeaf); got != want {
			t.Errorf("serial %s, want the ACME certificate %s", got, want)
		}
		st := c.ConnectionState()
		if st.Version != tls.VersionTLS13 {
			t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(st.Version))
		}
		if st.NegotiatedProtocol != "" {
			t.Errorf("ALPN %q negotiated on a mail port", st.NegotiatedProtocol)
		}
	})
	t.Run("sni in another case gets the ACME certificate", func(t *testing.T) {
		c, err := dial(t, srv.addr, insecureClient("MX.Example.COM"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := peerSerial(c), serialOf(f.acmeLeaf); got != want {
			t.Errorf("serial %s, want the ACME certificate %s", got, want)
		}
	})
	t.Run("no sni gets the store default", func(t *testing.T) {
		c, err := dial(t, srv.addr, insecureClient(""))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := peerSerial(c), serialOf(f.def); got != want {
			t.Errorf("serial %s, want the Store's default %s", got, want)
		}
		if st, ok := srv.lastState(); !ok || st.ServerName != "" {
			t.Errorf("server saw SNI %q, want none", st.ServerName)
		}
	})
	t.Run("sni outside host policy gets the store certificate for the name", func(t *testing.T) {
		c, err := dial(t, srv.addr, &tls.Config{ServerName: storeHost, RootCAs: f.ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := peerSerial(c), serialOf(f.other); got != want {
			t.Errorf("serial %s, want the Store's %q certificate %s", got, storeHost, want)
		}
		if !strings.Contains(f.logs.String(), "outside the ACME host policy") {
			t.Errorf("no debug line for the name outside the policy; logs:\n%s", f.logs)
		}
	})
	t.Run("unknown sni outside host policy gets the store default", func(t *testing.T) {
		c, err := dial(t, srv.addr, insecureClient("unknown.example.org"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := peerSerial(c), serialOf(f.def); got != want {
			t.Errorf("serial %s, want the Store's default %s", got, want)
		}
	})
	t.Run("TLS 1.2 client gets an ECDHE AEAD suite", func(t *testing.T) {
		cc := insecureClient(acmeHost)
		cc.MaxVersion = tls.VersionTLS12
		c, err := dial(t, srv.addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		st := c.ConnectionState()
		if st.Version != tls.VersionTLS12 || !isAEADECDHE(st.CipherSuite) {
			t.Errorf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
		}
		if got, want := peerSerial(c), serialOf(f.acmeLeaf); got != want {
			t.Errorf("serial %s, want the ACME certificate %s", got, want)
		}
	})
	t.Run("TLS 1.1 client is refused", func(t *testing.T) {
		cc := insecureClient(acmeHost)
		cc.MinVersion, cc.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if _, err := dial(t, srv.addr, cc); err == nil {
			t.Error("TLS 1.1 handshake succeeded")
		}
	})

	if d := f.dialer.dialed(); len(d) != 0 {
		t.Fatalf("the ACME client was used for cached or out-of-policy names: %v", d)
	}

	t.Run("tls-alpn-01 hello without a challenge gets no store certificate", func(t *testing.T) {
		cc := insecureClient(acmeHost)
		cc.NextProtos = []string{acme.ALPNProto}
		if c, err := dial(t, srv.addr, cc); err == nil {
			t.Fatalf("handshake succeeded with certificate %s; a tls-alpn-01 validation must get the challenge certificate or nothing", peerSerial(c))
		}
		// The server records its error after the client has seen the
		// alert, so wait for it.
		sawTokenErr := func() bool {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			for _, err := range srv.hsErrors {
				if strings.Contains(err.Error(), "no token cert") {
					return true
				}
			}
			return false
		}
		if !waitFor(5*time.Second, sawTokenErr) {
			t.Errorf("server handshake error %v, want autocert's missing token certificate", srv.lastError())
		}
	})
	t.Run("ACME failure for a name in host policy falls back to the store", func(t *testing.T) {
		start := time.Now()
		c, err := dial(t, srv.addr, insecureClient(acmeNewHost))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := peerSerial(c), serialOf(f.def); got != want {
			t.Errorf("serial %s, want the Store's default %s", got, want)
		}
		d := f.dialer.dialed()
		if len(d) == 0 {
			t.Fatal("autocert did not try the CA for a name in its policy: the fallback was not exercised")
		}
		for _, a := range d {
			if a != "127.0.0.1:1" {
				t.Errorf("ACME client dialed %s, want only the unreachable 127.0.0.1:1", a)
			}
		}
		if !strings.Contains(f.logs.String(), "level=WARN msg=\"certstore: ACME certificate unavailable, using the store\" sni="+acmeNewHost) {
			t.Errorf("no warning for the ACME failure; logs:\n%s", f.logs)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("fallback took %v", el)
		}
	})
}

// TestACMEConcurrentHandshakes mixes the cases from several goroutines (run
// it with -race).
func TestACMEConcurrentHandshakes(t *testing.T) {
	f := newACMEFixture(t)
	cfg, err := f.store.ACMETLSConfig(f.manager, TLSOptions{MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)
	cases := []struct{ sni, want string }{
		{acmeHost, serialOf(f.acmeLeaf)},
		{"", serialOf(f.def)},
		{storeHost, serialOf(f.other)},
		{"nobody.example", serialOf(f.def)},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(cases))
	for i := range 4 * len(cases) {
		tc := cases[i%len(cases)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.addr, insecureClient(tc.sni))
			if err != nil {
				errs <- fmt.Errorf("sni %q: %w", tc.sni, err)
				return
			}
			defer c.Close()
			if err := echo(c); err != nil {
				errs <- fmt.Errorf("sni %q: %w", tc.sni, err)
				return
			}
			if got := peerSerial(c); got != tc.want {
				errs <- fmt.Errorf("sni %q: serial %s, want %s", tc.sni, got, tc.want)
			}
			if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
				errs <- fmt.Errorf("sni %q: %s", tc.sni, tls.VersionName(v))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := f.dialer.dialed(); len(d) != 0 {
		t.Errorf("the ACME client was used: %v", d)
	}
}

func TestACMETLSConfigFields(t *testing.T) {
	f := newACMEFixture(t)
	cfg, err := f.store.ACMETLSConfig(f.manager, TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %s", tls.VersionName(cfg.MinVersion))
	}
	if fmt.Sprint(cfg.CipherSuites) != fmt.Sprint(CipherSuites()) {
		t.Errorf("CipherSuites %v, want %v", cfg.CipherSuites, CipherSuites())
	}
	if cfg.NextProtos != nil {
		t.Errorf("NextProtos %q: autocert's TLSConfig leaked into the mail port config", cfg.NextProtos)
	}
	if cfg.CurvePreferences != nil || cfg.SessionTicketsDisabled || cfg.Certificates != nil || cfg.GetCertificate == nil {
		t.Error("not the RFC 9325 defaults of ServerTLSConfig")
	}
	if _, err := f.store.ACMETLSConfig(f.manager, TLSOptions{MinVersion: tls.VersionTLS11}); !errors.Is(err, ErrInsecureConfig) {
		t.Errorf("MinVersion TLS 1.1: %v, want ErrInsecureConfig", err)
	}
}

// TestACMEGetCertificateDirect calls the adapter without a handshake, as a
// host application's own code might (no context in the hello).
func TestACMEGetCertificateDirect(t *testing.T) {
	f := newACMEFixture(t)
	get, err := f.store.ACME(f.manager)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sni  string
		want *certtest.Leaf
	}{
		{acmeHost, f.acmeLeaf},
		{"", f.def},
		{storeHost, f.other},
		{"single-label", f.def},
	} {
		c, err := get(&tls.ClientHelloInfo{ServerName: tc.sni, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
		if err != nil {
			t.Errorf("%q: %v", tc.sni, err)
			continue
		}
		if got, want := c.Leaf.SerialNumber.Text(16), serialOf(tc.want); got != want {
			t.Errorf("%q: serial %s, want %s", tc.sni, got, want)
		}
	}
	if d := f.dialer.dialed(); len(d) != 0 {
		t.Errorf("the ACME client was used: %v", d)
	}
}

func TestACMEConfigErrors(t *testing.T) {
	st, _ := stores(t)
	isConfigErr := func(t *testing.T, what string, err error) {
		t.Helper()
		var ce *Error
		if !errors.Is(err, ErrACMEConfig) || !errors.As(err, &ce) || ce.Op != "config" {
			t.Errorf("%s: %v, want an *Error wrapping ErrACMEConfig", what, err)
		}
	}
	_, err := st.ACME(nil)
	isConfigErr(t, "ACME(nil)", err)
	_, err = st.ACME(&autocert.Manager{Cache: autocert.DirCache(t.TempDir())})
	isConfigErr(t, "ACME without HostPolicy", err)
	_, err = st.ACMETLSConfig(&autocert.Manager{}, TLSOptions{})
	isConfigErr(t, "ACMETLSConfig without HostPolicy", err)

	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    ACMEOptions
	}{
		{"zero value", ACMEOptions{}},
		{"no hosts", ACMEOptions{CacheDir: dir}},
		{"no cache", ACMEOptions{Hosts: []string{acmeHost}}},
		{"empty host", ACMEOptions{Hosts: []string{acmeHost, ""}, CacheDir: dir}},
		{"wildcard", ACMEOptions{Hosts: []string{"*.example.com"}, CacheDir: dir}},
		{"ip", ACMEOptions{Hosts: []string{"192.0.2.1"}, CacheDir: dir}},
		{"single label", ACMEOptions{Hosts: []string{"localhost"}, CacheDir: dir}},
	} {
		m, err := NewACMEManager(tc.o)
		if m != nil {
			t.Errorf("%s: got a Manager", tc.name)
		}
		isConfigErr(t, tc.name, err)
	}
}

func TestNewACMEManager(t *testing.T) {
	dir := t.TempDir()
	m, err := NewACMEManager(ACMEOptions{Hosts: []string{"MX.Example.com", "mx2.example.com"}, CacheDir: dir, Email: "postmaster@example.com", RenewBefore: 20 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, h := range []string{"mx.example.com", "mx2.example.com"} {
		if err := m.HostPolicy(ctx, h); err != nil {
			t.Errorf("HostPolicy rejects %s: %v", h, err)
		}
	}
	if err := m.HostPolicy(ctx, "evil.example.com"); err == nil {
		t.Error("HostPolicy accepts a name not in Hosts")
	}
	if m.Prompt("https://ca.example/tos") {
		t.Error("terms of service accepted without AcceptTOS")
	}
	if c, ok := m.Cache.(autocert.DirCache); !ok || string(c) != dir {
		t.Errorf("Cache %#v, want DirCache(%q)", m.Cache, dir)
	}
	if m.Client != nil {
		t.Errorf("Client %+v, want nil (autocert's default directory)", m.Client)
	}
	if m.Email != "postmaster@example.com" || m.RenewBefore != 20*24*time.Hour {
		t.Errorf("Email %q RenewBefore %v", m.Email, m.RenewBefore)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("NewACMEManager wrote to the cache: %v", entries)
	}

	hc := &http.Client{}
	m, err = NewACMEManager(ACMEOptions{Hosts: []string{acmeHost}, CacheDir: dir, AcceptTOS: true, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Prompt("https://ca.example/tos") {
		t.Error("AcceptTOS not honoured")
	}
	if m.Client == nil || m.Client.HTTPClient != hc || m.Client.DirectoryURL != autocert.DefaultACMEDirectory {
		t.Errorf("Client %+v, want HTTPClient set and the default directory", m.Client)
	}
}

// TestACMECacheFileAsStoreSource checks the recipe on Store.ACME for giving
// no-SNI clients the ACME certificate: autocert's cache file (key then
// chain) loads as a combined-PEM Source.
func TestACMECacheFileAsStoreSource(t *testing.T) {
	f := newACMEFixture(t)
	st, err := New(Source{Name: "acme", CertFile: filepath.Join(f.cacheDir, acmeHost), Default: true}, Source{Name: "other", Certificate: &f.other.TLS})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := st.ACMETLSConfig(f.manager, TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, cfg)
	for _, sni := range []string{"", acmeHost} {
		c, err := dial(t, srv.addr, insecureClient(sni))
		if err != nil {
			t.Fatalf("sni %q: %v", sni, err)
		}
		if got, want := peerSerial(c), serialOf(f.acmeLeaf); got != want {
			t.Errorf("sni %q: serial %s, want the ACME certificate %s", sni, got, want)
		}
	}
}
