package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/policy"
)

// clock is a settable Now seam.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// response is what the policy host serves for one domain.
type response struct {
	status      int    // 0 means 200
	contentType string // "" means text/plain
	body        string
	location    string // for redirects
	hang        bool   // never answer (until the client gives up)
}

// policyHost is a local HTTPS server standing in for mta-sts.<domain> hosts,
// on loopback, with a certificate from a test CA.
type policyHost struct {
	t    *testing.T
	ca   *certtest.CA
	srv  *httptest.Server
	cert atomic.Pointer[tls.Certificate]

	mu    sync.Mutex
	resp  map[string]response // by host name
	hits  map[string]int      // by host name and path
	dials atomic.Int32
}

func newPolicyHost(t *testing.T, names ...string) *policyHost {
	t.Helper()
	ph := &policyHost{t: t, ca: certtest.MustCA("mtasts test CA"), resp: map[string]response{}, hits: map[string]int{}}
	leaf := ph.ca.MustIssue(certtest.LeafOptions{DNSNames: names})
	ph.cert.Store(&leaf.TLS)
	ph.srv = httptest.NewUnstartedServer(http.HandlerFunc(ph.serve))
	ph.srv.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return ph.cert.Load(), nil
	}}
	ph.srv.StartTLS()
	t.Cleanup(ph.srv.Close)
	return ph
}

func (ph *policyHost) serve(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	ph.mu.Lock()
	ph.hits[host+r.URL.Path]++
	resp, ok := ph.resp[host]
	ph.mu.Unlock()
	if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	if resp.hang {
		<-r.Context().Done()
		return
	}
	if resp.location != "" {
		w.Header().Set("Location", resp.location)
	}
	ct := resp.contentType
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	if resp.status != 0 {
		w.WriteHeader(resp.status)
	}
	fmt.Fprint(w, resp.body)
}

func (ph *policyHost) set(host string, r response) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.resp[host] = r
}

func (ph *policyHost) hitCount(hostPath string) int {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return ph.hits[hostPath]
}

// dial maps every "mta-sts.*:443" to the loopback server and refuses
// anything else, so no test can reach the network.
func (ph *policyHost) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if port != "443" || !strings.HasPrefix(host, "mta-sts.") {
		ph.t.Errorf("unexpected dial to %s", addr)
		return nil, fmt.Errorf("test refuses to dial %s", addr)
	}
	ph.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", ph.srv.Listener.Addr().String())
}

const enforceBody = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.com\r\nmax_age: 86400\r\n"

type fixture struct {
	ph    *policyHost
	dns   *mockdns.Resolver
	clock *clock
	dir   string
	c     *Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		ph:    newPolicyHost(t, "mta-sts.example.com", "mta-sts.example.org"),
		dns:   &mockdns.Resolver{Zones: map[string]mockdns.Zone{}},
		clock: &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)},
		dir:   t.TempDir(),
	}
	f.c = f.newClient()
	return f
}

// newClient returns a fresh Client on the same cache directory (a restart).
func (f *fixture) newClient() *Client {
	return &Client{
		Resolver:    f.dns,
		RootCAs:     f.ph.ca.Pool,
		DialContext: f.ph.dial,
		Cache:       &DirCache{Dir: f.dir},
		Now:         f.clock.Now,
	}
}

func (f *fixture) txt(domain string, records ...string) {
	f.dns.Zones["_mta-sts."+domain+"."] = mockdns.Zone{TXT: records}
}

func TestLookupEnforce(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=20261127;")
	f.ph.set("mta-sts.example.com", response{body: enforceBody})

	r, err := f.c.Lookup(context.Background(), "Example.COM.")
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Requirement{
		Domain:          "example.com",
		Level:           policy.Verify,
		MXPatterns:      []string{"mx1.example.com", "*.mail.example.com"},
		MXAuthenticated: true,
		Mode:            policy.Enforce,
		OnFailure:       policy.Defer,
		Source:          policy.SourceMTASTS,
		PolicyString:    []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.mail.example.com", "max_age: 86400"},
		Reason:          "mta-sts id=20261127 max_age=86400 mode=enforce",
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("Lookup =\n %+v\nwant\n %+v", r, want)
	}
	// An enforce policy admits only matching MX hosts (RFC 8461 §4.1): the
	// Requirement's patterns reject an MX outside them.
	match := func(host string) bool {
		for _, p := range r.MXPatterns {
			if policy.MatchMX(p, host) {
				return true
			}
		}
		return false
	}
	if match("mx.attacker.example") || match("a.b.mail.example.com") || !match("mx1.example.com") || !match("in.mail.example.com") {
		t.Error("MX patterns of the requirement do not select the right hosts")
	}
	if n := f.ph.hitCount("mta-sts.example.com/.well-known/mta-sts.txt"); n != 1 {
		t.Errorf("policy fetched %d times, want 1", n)
	}
	// A second lookup with the same id is served from the cache.
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	if n := f.ph.hitCount("mta-sts.example.com/.well-known/mta-sts.txt"); n != 1 {
		t.Errorf("policy fetched %d times after second lookup, want 1", n)
	}
	// The Entry carries the text lines for TLS-RPT's policy-string.
	e, err := f.c.Get(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Lines(); len(got) != 5 || got[0] != "version: STSv1" || got[4] != "max_age: 86400" {
		t.Errorf("Lines = %q", got)
	}
}

func TestLookupTestingMode(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=t1")
	f.ph.set("mta-sts.example.com", response{body: strings.Replace(enforceBody, "enforce", "testing", 1)})
	r, err := f.c.Lookup(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != policy.Testing || r.MXAuthenticated || r.Level != policy.Verify || r.Source != policy.SourceMTASTS {
		t.Errorf("testing policy gave %+v", r)
	}
	if !strings.Contains(r.String(), "testing mode") {
		t.Errorf("String() = %q does not say testing mode", r.String())
	}
}

func TestLookupModeNone(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=n1")
	f.ph.set("mta-sts.example.com", response{body: "version: STSv1\nmode: none\nmax_age: 86400\n"})
	_, err := f.c.Lookup(context.Background(), "example.com")
	var npe *NoPolicyError
	if !errors.Is(err, policy.ErrNoPolicy) || !errors.Is(err, ErrModeNone) || !errors.As(err, &npe) || !npe.Published {
		t.Fatalf("mode none: err = %v", err)
	}
}

func TestLookupNoRecord(t *testing.T) {
	f := newFixture(t)
	// NXDOMAIN, and a TXT that is not an MTA-STS record.
	f.dns.Zones["_mta-sts.example.org."] = mockdns.Zone{TXT: []string{"v=spf1 -all"}}
	for _, d := range []string{"example.com", "example.org"} {
		_, err := f.c.Lookup(context.Background(), d)
		var npe *NoPolicyError
		if !errors.Is(err, policy.ErrNoPolicy) || !errors.Is(err, ErrNoRecord) || !errors.As(err, &npe) || npe.Published {
			t.Errorf("%s: err = %v", d, err)
		}
	}
	if n := f.ph.dials.Load(); n != 0 {
		t.Errorf("policy host dialled %d times without a record", n)
	}
}

func TestLookupRecordRules(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		txts []string
		err  error
		id   string
	}{
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, ErrMultipleRecords, ""},
		{[]string{"v=STSv1; id=a", "v=spf1 -all", "hello"}, nil, "a"}, // others discarded
		{[]string{"v=STSv1; id=bad-id"}, ErrRecordSyntax, ""},
		{[]string{"v=STSv10; id=a"}, ErrNoRecord, ""},
		{[]string{}, ErrNoRecord, ""},
	}
	for _, tc := range tests {
		f.txt("example.com", tc.txts...)
		r, err := f.c.LookupRecord(context.Background(), "example.com")
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: err = %v, want %v", tc.txts, err, tc.err)
			}
			continue
		}
		if err != nil || r.ID != tc.id {
			t.Errorf("%q: %+v, %v; want id %s", tc.txts, r, err, tc.id)
		}
	}
	f.dns.Zones["_mta-sts.example.com."] = mockdns.Zone{Err: errors.New("SERVFAIL")}
	if _, err := f.c.LookupRecord(context.Background(), "example.com"); !errors.Is(err, ErrDNS) {
		t.Errorf("temporary failure: err = %v, want ErrDNS", err)
	}
}

func TestFetchRefusals(t *testing.T) {
	big := enforceBody + "x-pad: " + strings.Repeat("a", MaxPolicySize) + "\n"
	tests := []struct {
		name   string
		resp   response
		err    error
		result string
	}{
		{"redirect", response{status: http.StatusFound, location: "https://mta-sts.example.com/elsewhere"}, ErrPolicyFetch, "sts-policy-fetch-error"},
		{"permanent redirect", response{status: http.StatusPermanentRedirect, location: "/other"}, ErrPolicyFetch, "sts-policy-fetch-error"},
		{"404", response{status: http.StatusNotFound, body: enforceBody}, ErrPolicyFetch, "sts-policy-fetch-error"},
		{"500", response{status: http.StatusInternalServerError, body: enforceBody}, ErrPolicyFetch, "sts-policy-fetch-error"},
		{"204", response{status: http.StatusNoContent}, ErrPolicyFetch, "sts-policy-fetch-error"},
		{"oversized", response{body: big}, ErrPolicyTooLarge, "sts-policy-invalid"},
		{"content type", response{contentType: "text/html", body: enforceBody}, ErrContentType, "sts-policy-invalid"},
		{"octet stream", response{contentType: "application/octet-stream", body: enforceBody}, ErrPolicySyntax, "sts-policy-invalid"},
		{"syntax", response{body: "version: STSv1\nmode: enforce\n"}, ErrPolicySyntax, "sts-policy-invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.txt("example.com", "v=STSv1; id=1")
			f.ph.set("mta-sts.example.com", tc.resp)
			_, _, err := f.c.FetchPolicy(context.Background(), "example.com")
			if !errors.Is(err, tc.err) {
				t.Fatalf("FetchPolicy: err = %v, want %v", err, tc.err)
			}
			_, err = f.c.Lookup(context.Background(), "example.com")
			var npe *NoPolicyError
			if !errors.As(err, &npe) || !npe.Published || !errors.Is(err, tc.err) {
				t.Fatalf("Lookup: err = %v, want NoPolicyError wrapping %v", err, tc.err)
			}
			if got := TLSRPTResultType(err); string(got) != tc.result {
				t.Errorf("TLSRPTResultType = %q, want %q", got, tc.result)
			}
			// Redirect targets are never requested.
			if n := f.ph.hitCount("mta-sts.example.com/elsewhere") + f.ph.hitCount("mta-sts.example.com/other"); n != 0 {
				t.Errorf("redirect followed %d times", n)
			}
		})
	}
}

func TestFetchExactlyMaxSize(t *testing.T) {
	f := newFixture(t)
	prefix := enforceBody + "x-pad: "
	body := prefix + strings.Repeat("a", MaxPolicySize-len(prefix)-1) + "\n"
	if len(body) != MaxPolicySize {
		t.Fatalf("body is %d bytes", len(body))
	}
	f.ph.set("mta-sts.example.com", response{body: body})
	p, text, err := f.c.FetchPolicy(context.Background(), "example.com")
	if err != nil || len(text) != MaxPolicySize || p.Mode != ModeEnforce {
		t.Fatalf("64 KiB policy: %v, %d bytes", err, len(text))
	}
}

func TestFetchTimeout(t *testing.T) {
	f := newFixture(t)
	f.ph.set("mta-sts.example.com", response{hang: true, body: enforceBody})
	f.c.FetchTimeout = 200 * time.Millisecond
	start := time.Now()
	_, _, err := f.c.FetchPolicy(context.Background(), "example.com")
	if !errors.Is(err, ErrPolicyFetch) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v, want ErrPolicyFetch after ~200ms", err, time.Since(start))
	}
}

func TestInvalidCertificate(t *testing.T) {
	untrusted := certtest.MustCA("someone else").MustIssue(certtest.LeafOptions{DNSNames: []string{"mta-sts.example.com"}})
	tests := map[string]func(ca *certtest.CA) *tls.Certificate{
		"untrusted CA": func(*certtest.CA) *tls.Certificate { return &untrusted.TLS },
		"wrong name": func(ca *certtest.CA) *tls.Certificate {
			return &ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"www.example.com"}}).TLS
		},
		"expired": func(ca *certtest.CA) *tls.Certificate {
			return &ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mta-sts.example.com"},
				NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}).TLS
		},
	}
	for name, cert := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.txt("example.com", "v=STSv1; id=1")
			f.ph.set("mta-sts.example.com", response{body: enforceBody})
			f.ph.cert.Store(cert(f.ph.ca))

			// No cached policy: the fetch fails, the domain has no policy.
			_, err := f.c.Lookup(context.Background(), "example.com")
			if !errors.Is(err, policy.ErrNoPolicy) || !errors.Is(err, ErrWebPKI) {
				t.Fatalf("err = %v, want no policy because of ErrWebPKI", err)
			}
			if got := TLSRPTResultType(err); got != "sts-webpki-invalid" {
				t.Errorf("result type %q", got)
			}
			if n := f.ph.hitCount("mta-sts.example.com/.well-known/mta-sts.txt"); n != 0 {
				t.Errorf("policy served %d times over an invalid certificate", n)
			}
		})
	}

	t.Run("cached policy still used", func(t *testing.T) {
		f := newFixture(t)
		f.txt("example.com", "v=STSv1; id=1")
		f.ph.set("mta-sts.example.com", response{body: enforceBody})
		if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
			t.Fatal(err)
		}
		// The id changes, but the new policy comes over an untrusted
		// certificate (an attacker on the path): keep the cached policy.
		f.txt("example.com", "v=STSv1; id=2")
		f.ph.set("mta-sts.example.com", response{body: strings.Replace(enforceBody, "enforce", "none", 1)})
		f.ph.cert.Store(&untrusted.TLS)
		f.clock.Add(time.Hour)
		r, err := f.c.Lookup(context.Background(), "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if r.Mode != policy.Enforce || !strings.Contains(r.Reason, "id=1") {
			t.Errorf("got %+v, want the cached enforce policy id=1", r)
		}
		// The failure is kept on the entry for TLS-RPT (RFC 8461 §6).
		e, err := f.c.Get(context.Background(), "example.com")
		if err != nil || TLSRPTResultType(e.DiscoveryErr) != "sts-webpki-invalid" {
			t.Errorf("Get: %v, DiscoveryErr %v", err, e.DiscoveryErr)
		}
	})
}

func TestIDChangeRefetches(t *testing.T) {
	f := newFixture(t)
	path := "mta-sts.example.com/.well-known/mta-sts.txt"
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	f.ph.set("mta-sts.example.com", response{body: "version: STSv1\nmode: enforce\nmx: mx2.example.com\nmax_age: 3600\n"})
	f.clock.Add(time.Minute)
	r, err := f.c.Lookup(context.Background(), "example.com")
	if err != nil || !reflect.DeepEqual(r.MXPatterns, []string{"mx1.example.com", "*.mail.example.com"}) {
		t.Fatalf("same id must use the cache: %+v, %v", r, err)
	}
	if n := f.ph.hitCount(path); n != 1 {
		t.Fatalf("fetched %d times with an unchanged id", n)
	}
	if e, err := f.c.Get(context.Background(), "example.com"); err != nil || e.DiscoveryErr != nil {
		t.Fatalf("cache hit reports a discovery error: %v %v", err, e.DiscoveryErr)
	}
	f.txt("example.com", "v=STSv1; id=2")
	r, err = f.c.Lookup(context.Background(), "example.com")
	if err != nil || !reflect.DeepEqual(r.MXPatterns, []string{"mx2.example.com"}) || !strings.Contains(r.Reason, "id=2 max_age=3600") {
		t.Fatalf("new id must refetch: %+v, %v", r, err)
	}
	if n := f.ph.hitCount(path); n != 2 {
		t.Fatalf("fetched %d times, want 2", n)
	}
}

func TestCacheSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	want, err := f.c.Lookup(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "example.com.json")); err != nil {
		t.Fatalf("no cache file: %v", err)
	}
	// Restart: the policy host is gone; a new Client on the same directory.
	f.ph.srv.Close()
	dials := f.ph.dials.Load()
	f.clock.Add(12 * time.Hour)
	c2 := f.newClient()
	got, err := c2.Lookup(context.Background(), "example.com")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after restart: %+v, %v; want %+v", got, err, want)
	}
	// The TXT lookup failing (SERVFAIL) or vanishing still leaves the
	// cached policy in force (RFC 8461 §5.1).
	f.dns.Zones["_mta-sts.example.com."] = mockdns.Zone{Err: errors.New("SERVFAIL")}
	if got, err := f.newClient().Lookup(context.Background(), "example.com"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("TXT failure: %+v, %v", got, err)
	}
	delete(f.dns.Zones, "_mta-sts.example.com.")
	if got, err := f.newClient().Lookup(context.Background(), "example.com"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("TXT gone: %+v, %v", got, err)
	}
	if n := f.ph.dials.Load(); n != dials {
		t.Errorf("restarted clients dialled the policy host %d times", n-dials)
	}
	// A corrupt cache file is ignored, not fatal.
	if err := os.WriteFile(filepath.Join(f.dir, "example.com.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.newClient().Lookup(context.Background(), "example.com"); !errors.Is(err, policy.ErrNoPolicy) {
		t.Fatalf("corrupt cache: err = %v", err)
	}
}

func TestRefresh(t *testing.T) {
	f := newFixture(t)
	path := "mta-sts.example.com/.well-known/mta-sts.txt"
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: enforceBody}) // max_age 86400
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	before, _, _ := f.c.Cache.Get(context.Background(), "example.com")

	// Not yet half-way: nothing to do.
	f.clock.Add(11 * time.Hour)
	if err := f.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.ph.hitCount(path); n != 1 {
		t.Fatalf("refresh before half of max_age fetched (%d)", n)
	}

	// Past half-way, the host fails: the cached policy is kept unchanged.
	f.clock.Add(2 * time.Hour)
	f.ph.set("mta-sts.example.com", response{status: http.StatusServiceUnavailable})
	if err := f.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.ph.hitCount(path); n != 2 {
		t.Fatalf("refresh fetched %d times, want 2", n)
	}
	kept, ok, _ := f.c.Cache.Get(context.Background(), "example.com")
	if !ok || !kept.Fetched.Equal(before.Fetched) || kept.Text != before.Text {
		t.Fatalf("failed refresh changed the cache: %+v", kept)
	}
	if r, err := f.c.Lookup(context.Background(), "example.com"); err != nil || r.Mode != policy.Enforce {
		t.Fatalf("after failed refresh: %+v, %v", r, err)
	}

	// The host recovers, same id: the refresh extends the lifetime.
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	if err := f.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, _, _ := f.c.Cache.Get(context.Background(), "example.com")
	if !after.Expires.Equal(f.clock.Now().Add(24 * time.Hour)) {
		t.Fatalf("refresh did not extend expiry: %v", after.Expires)
	}
}

func TestExpiry(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: strings.Replace(enforceBody, "86400", "3600", 1)})
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	f.ph.set("mta-sts.example.com", response{status: http.StatusInternalServerError})
	f.clock.Add(3599 * time.Second)
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	f.clock.Add(2 * time.Second)
	// Expired, TXT id unchanged, fetch fails: the expired policy is not used.
	_, err := f.c.Lookup(context.Background(), "example.com")
	if !errors.Is(err, policy.ErrNoPolicy) || !errors.Is(err, ErrPolicyFetch) {
		t.Fatalf("after expiry: err = %v", err)
	}
	// Refresh drops the expired entry it cannot renew.
	if err := f.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.c.Cache.Get(context.Background(), "example.com"); ok {
		t.Fatal("expired entry still cached after a failed refresh")
	}
}

func TestRetryAfterFailure(t *testing.T) {
	f := newFixture(t)
	path := "mta-sts.example.com/.well-known/mta-sts.txt"
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{status: http.StatusInternalServerError})
	for i := 0; i < 3; i++ {
		if _, err := f.c.Lookup(context.Background(), "example.com"); !errors.Is(err, ErrPolicyFetch) {
			t.Fatalf("lookup %d: err = %v", i, err)
		}
	}
	if n := f.ph.hitCount(path); n != 1 {
		t.Fatalf("failing host fetched %d times within the back-off", n)
	}
	f.clock.Add(5 * time.Minute)
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatalf("after back-off: %v", err)
	}
	if n := f.ph.hitCount(path); n != 2 {
		t.Fatalf("fetched %d times, want 2", n)
	}
}

func TestRun(t *testing.T) {
	f := newFixture(t)
	path := "mta-sts.example.com/.well-known/mta-sts.txt"
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(20 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.c.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for f.ph.hitCount(path) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if n := f.ph.hitCount(path); n != 2 {
		t.Fatalf("Run did not refresh (%d fetches)", n)
	}
}

func TestDirCacheRejectsBadNames(t *testing.T) {
	c := &DirCache{Dir: t.TempDir()}
	for _, d := range []string{"../etc", "a/b", "", "UPPER.example", ".hidden"} {
		if err := c.Put(context.Background(), Entry{Domain: d, Text: enforceBody}); err == nil {
			t.Errorf("Put(%q) succeeded", d)
		}
	}
	if err := (&DirCache{}).Put(context.Background(), Entry{Domain: "example.com"}); err == nil {
		t.Error("empty Dir accepted")
	}
}

func TestConcurrentLookups(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The Client fits policy.Strictest: no policy abstains (the default
// decides), a published enforce policy raises the default.
func TestWithStrictest(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	s := &policy.Strictest{Policies: []policy.Policy{f.c, policy.Fixed{Level: policy.May}}}
	r, err := s.Lookup(context.Background(), "example.com")
	if err != nil || r.Level != policy.Verify || r.Source != policy.SourceMTASTS || !r.MXAuthenticated {
		t.Fatalf("published policy: %+v, %v", r, err)
	}
	r, err = s.Lookup(context.Background(), "example.org")
	if err != nil || r.Level != policy.May || r.Source != policy.SourceDefault {
		t.Fatalf("no policy: %+v, %v", r, err)
	}
}

// A long max_age is still refreshed daily (RFC 8461 §3.3).
func TestRefreshDaily(t *testing.T) {
	f := newFixture(t)
	path := "mta-sts.example.com/.well-known/mta-sts.txt"
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: strings.Replace(enforceBody, "86400", "31557600", 1)})
	if _, err := f.c.Lookup(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(23 * time.Hour)
	if err := f.c.Refresh(context.Background()); err != nil || f.ph.hitCount(path) != 1 {
		t.Fatalf("refreshed before a day: %v, %d fetches", err, f.ph.hitCount(path))
	}
	f.clock.Add(2 * time.Hour)
	if err := f.c.Refresh(context.Background()); err != nil || f.ph.hitCount(path) != 2 {
		t.Fatalf("not refreshed after a day: %v, %d fetches", err, f.ph.hitCount(path))
	}
}

// A host-supplied HTTPClient that would follow redirects is tamed: the
// Client replaces its CheckRedirect (RFC 8461 §3.3).
func TestHostHTTPClientRedirectRefused(t *testing.T) {
	f := newFixture(t)
	f.c.HTTPClient = &http.Client{Transport: &http.Transport{
		DialContext:     f.ph.dial,
		TLSClientConfig: &tls.Config{RootCAs: f.ph.ca.Pool},
	}}
	f.ph.set("mta-sts.example.com", response{status: http.StatusMovedPermanently, location: "https://mta-sts.example.com/elsewhere"})
	if _, _, err := f.c.FetchPolicy(context.Background(), "example.com"); !errors.Is(err, ErrPolicyFetch) {
		t.Fatalf("err = %v", err)
	}
	if n := f.ph.hitCount("mta-sts.example.com/elsewhere"); n != 0 {
		t.Fatalf("redirect followed %d times", n)
	}
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	if _, _, err := f.c.FetchPolicy(context.Background(), "example.com"); err != nil {
		t.Fatalf("a plain 200 through the host's client: %v", err)
	}
}

// A cancelled lookup is an error the caller must defer on, never "no policy".
func TestLookupCancelled(t *testing.T) {
	f := newFixture(t)
	f.txt("example.com", "v=STSv1; id=1")
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.c.Lookup(ctx, "example.com")
	if !errors.Is(err, context.Canceled) || errors.Is(err, policy.ErrNoPolicy) {
		t.Fatalf("err = %v, want context.Canceled and not ErrNoPolicy", err)
	}
}

// TestLookupRecordCandidates pins which TXT records count as MTA-STS
// records (RFC 8461 §3.1: those beginning "v=STSv1;", WSP allowed before
// the ';').
func TestLookupRecordCandidates(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		txts []string
		err  error
		id   string
	}{
		{[]string{"v=STSv1 ; id=a"}, nil, "a"},
		{[]string{"v=STSv1\t;id=a;"}, nil, "a"},
		{[]string{"v=STSv1"}, ErrNoRecord, ""},                          // no ';': not a candidate
		{[]string{"v=STSv1 id=a"}, ErrNoRecord, ""},                     // likewise
		{[]string{"v=STSv1;", "v=STSv1; id=a"}, ErrMultipleRecords, ""}, // an invalid candidate still counts
		{[]string{"v=STSv1; id=a", "v=STSv1; id=a"}, ErrMultipleRecords, ""},
		{[]string{"V=STSv1; id=a"}, ErrNoRecord, ""},
	}
	for _, tc := range tests {
		f.txt("example.com", tc.txts...)
		r, err := f.c.LookupRecord(context.Background(), "example.com")
		if tc.err != nil {
			if !errors.Is(err, tc.err) || r != nil {
				t.Errorf("%q: %+v, %v; want %v", tc.txts, r, err, tc.err)
			}
			continue
		}
		if err != nil || r.ID != tc.id {
			t.Errorf("%q: %+v, %v; want id %s", tc.txts, r, err, tc.id)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.dns.Zones["_mta-sts.example.com."] = mockdns.Zone{Err: errors.New("SERVFAIL")}
	if _, err := f.c.LookupRecord(ctx, "example.com"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrDNS) {
		t.Errorf("canceled: err = %v, want context.Canceled", err)
	}
}
