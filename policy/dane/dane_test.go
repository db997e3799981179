package dane

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"
	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/policy"
)

type world struct {
	f      *fakeDNS
	pki    *pki
	mx1    *certtest.Leaf // served by mx1.secure.example, DANE-EE
	prov   *certtest.Leaf // served by mx.provider.example, DANE-TA via intermediate
	ee, ta policy.TLSA
}

func tlsaRR(recs ...policy.TLSA) []dns.RR {
	var out []dns.RR
	for _, r := range recs {
		out = append(out, ToDNS("x.", 0, r))
	}
	return out
}

func newWorld(t *testing.T) *world {
	t.Helper()
	p := newPKI(t)
	w := &world{pki: p}
	w.mx1 = p.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx1.secure.example"}})
	// The provider's certificate names the customer's next-hop domain only:
	// acceptable for DANE-TA when the MX RRset is secure (RFC 7672 §3.2.2).
	w.prov = p.leaf(t, certtest.LeafOptions{DNSNames: []string{"cname.example"}})
	w.ee = mustRecord(t, w.mx1.X509, UsageDANEEE, SelectorSPKI, MatchSHA256)
	w.ta = mustRecord(t, p.inter.X509, UsageDANETA, SelectorCert, MatchSHA256)
	pkixEE := mustRecord(t, w.mx1.X509, UsagePKIXEE, SelectorSPKI, MatchSHA256)
	badLen := w.ee
	badLen.Data = badLen.Data[:8]
	addr := []dns.RR{rrA("127.0.0.1")}
	w.f = startFakeDNS(t, map[string]fakeZone{
		"secure.example.":                {AD: true, RRs: []dns.RR{rrMX(20, "mx2.secure.example"), rrMX(10, "mx1.secure.example")}},
		"mx1.secure.example.":            {AD: true, RRs: addr},
		"_25._tcp.mx1.secure.example.":   {AD: true, RRs: tlsaRR(w.ee)},
		"mx2.secure.example.":            {AD: true, RRs: addr},
		"insecure.example.":              {AD: false, RRs: []dns.RR{rrMX(10, "mx1.secure.example")}},
		"insecaddr.example.":             {AD: true, RRs: []dns.RR{rrMX(10, "mx.insecaddr.example")}},
		"mx.insecaddr.example.":          {AD: false, RRs: addr},
		"_25._tcp.mx.insecaddr.example.": {AD: true, RRs: tlsaRR(w.ee)},
		"insectlsa.example.":             {AD: true, RRs: []dns.RR{rrMX(10, "mx.insectlsa.example")}},
		"mx.insectlsa.example.":          {AD: true, RRs: addr},
		"_25._tcp.mx.insectlsa.example.": {AD: false, RRs: tlsaRR(w.ee)},
		"unusable.example.":              {AD: true, RRs: []dns.RR{rrMX(10, "mx.unusable.example")}},
		"mx.unusable.example.":           {AD: true, RRs: addr},
		"_25._tcp.mx.unusable.example.":  {AD: true, RRs: tlsaRR(pkixEE, badLen)},
		"cname.example.":                 {AD: true, RRs: []dns.RR{rrMX(10, "mx.cname.example")}},
		"mx.cname.example.":              {AD: true, CNAME: "mx.provider.example"},
		"mx.provider.example.":           {AD: true, RRs: addr},
		"_25._tcp.mx.provider.example.":  {AD: true, RRs: tlsaRR(w.ta)},
		"cname2.example.":                {AD: true, RRs: []dns.RR{rrMX(10, "mx.cname2.example")}},
		"mx.cname2.example.":             {AD: true, CNAME: "mx.bare.example"},
		"mx.bare.example.":               {AD: true, RRs: addr},
		"_25._tcp.mx.cname2.example.":    {AD: true, RRs: tlsaRR(w.ee)},
		"partfail.example.":              {AD: true, RRs: []dns.RR{rrMX(5, "mx.bogus.example"), rrMX(10, "mx1.secure.example")}},
		"allfail.example.":               {AD: true, RRs: []dns.RR{rrMX(5, "mx.bogus.example")}},
		"mx.bogus.example.":              {AD: true, RRs: addr},
		"_25._tcp.mx.bogus.example.":     {ServFail: true},
		"addrfail.example.":              {AD: true, RRs: []dns.RR{rrMX(5, "mx.addrfail.example")}},
		"mx.addrfail.example.":           {ServFail: true},
		"mxfail.example.":                {ServFail: true},
		"nomx.example.":                  {AD: true, RRs: addr},
		"_25._tcp.nomx.example.":         {AD: true, RRs: tlsaRR(w.ee)},
		"nullmx.example.":                {AD: true, RRs: []dns.RR{rrMX(0, ".")}},
	})
	w.f.setNXAD(true) // names absent from the map are authenticated denials
	return w
}

func (w *world) policy(mandatory bool) *Policy {
	return &Policy{Resolver: &Resolver{Addr: w.f.addr}, Mandatory: mandatory,
		Logger: slog.New(slog.DiscardHandler)}
}

func TestLookupMXPerHostDecisions(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	d, err := w.policy(false).LookupMX(ctx, "Secure.Example.")
	if err != nil {
		t.Fatal(err)
	}
	if d.Domain != "secure.example" || !d.MXAuthentic || d.Implicit || len(d.Hosts) != 2 {
		t.Fatalf("destination %+v", d)
	}
	h1, h2 := d.Hosts[0], d.Hosts[1]
	if h1.Name != "mx1.secure.example" || h1.Pref != 10 || h1.Err != nil || h1.Level != policy.DANE ||
		len(h1.TLSA) != 1 || !h1.AddrsAuthentic || len(h1.Addrs) != 1 || h1.ServerName() != "mx1.secure.example" {
		t.Fatalf("mx1: %+v", h1)
	}
	if want := []string{"mx1.secure.example", "secure.example"}; strings.Join(h1.Names, ",") != strings.Join(want, ",") {
		t.Errorf("mx1 names %v, want %v", h1.Names, want)
	}
	// mx2 has an authenticated denial of TLSA: "dane" falls back to "may".
	if h2.Name != "mx2.secure.example" || h2.Err != nil || h2.Level != policy.May || len(h2.TLSA) != 0 {
		t.Fatalf("mx2: %+v", h2)
	}

	if !h1.RequiresTLS() || h2.RequiresTLS() {
		t.Errorf("RequiresTLS: mx1 %v (want true), mx2 %v (want false)", h1.RequiresTLS(), h2.RequiresTLS())
	}

	// dane-only: mx2 is not delivered to.
	d, err = w.policy(true).LookupMX(ctx, "secure.example")
	if err != nil {
		t.Fatal(err)
	}
	if d.Hosts[0].Level != policy.DANEOnly || d.Hosts[0].Err != nil {
		t.Errorf("dane-only mx1: %+v", d.Hosts[0])
	}
	if e := d.Hosts[1].Err; !errors.Is(e, ErrDANERequired) || ResultType(e) != "dane-required" {
		t.Errorf("dane-only mx2: err %v", e)
	}
	if _, err := d.Hosts[1].ClientConfig(nil, nil); !errors.Is(err, ErrDANERequired) {
		t.Errorf("ClientConfig for failed host: %v", err)
	}
}

func TestPort(t *testing.T) {
	w := newWorld(t)
	p := w.policy(false)
	p.Port = 2525
	h := p.LookupHost(context.Background(), "mx1.secure.example")
	if h.Level != policy.May || w.f.count("", "_2525._tcp.mx1.secure.example", dns.TypeTLSA) != 1 ||
		w.f.count("", "_25._tcp.mx1.secure.example", dns.TypeTLSA) != 0 {
		t.Fatalf("port 2525: %+v", h)
	}
	if TLSAName("MX.Example.", 0) != "_25._tcp.mx.example" || TLSAName("mx", 465) != "_465._tcp.mx" {
		t.Error("TLSAName")
	}
}

// AD absent anywhere on the path means no DANE: the records are ignored.
func TestNoDANEWithoutAuthentication(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, c := range []struct {
		domain   string
		tlsaName string // must not be queried when the precondition fails
		reason   string
	}{
		{"insecure.example", "_25._tcp.mx1.secure.example", "MX RRset not DNSSEC-authenticated"},
		{"insecaddr.example", "_25._tcp.mx.insecaddr.example", "address records not DNSSEC-authenticated"},
		{"insectlsa.example", "", "no DNSSEC-authenticated TLSA records"},
	} {
		before := w.f.count("", c.tlsaName, dns.TypeTLSA)
		d, err := w.policy(false).LookupMX(ctx, c.domain)
		if err != nil {
			t.Fatalf("%s: %v", c.domain, err)
		}
		h := d.Hosts[0]
		if h.Err != nil || h.Level != policy.May || len(h.TLSA) != 0 || !strings.Contains(h.Reason, c.reason) {
			t.Errorf("%s: %+v, want May because %q", c.domain, h, c.reason)
		}
		if c.tlsaName != "" && w.f.count("", c.tlsaName, dns.TypeTLSA) != before {
			t.Errorf("%s: TLSA was queried although DANE cannot apply", c.domain)
		}
		d, err = w.policy(true).LookupMX(ctx, c.domain)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(d.Hosts[0].Err, ErrDANERequired) {
			t.Errorf("%s dane-only: err %v, want ErrDANERequired", c.domain, d.Hosts[0].Err)
		}
	}
	// The insecure TLSA RRset really was there and was looked up.
	if w.f.count("", "_25._tcp.mx.insectlsa.example", dns.TypeTLSA) == 0 {
		t.Error("insectlsa: TLSA not queried")
	}
}

func TestUnusableOnlyMeansEncrypt(t *testing.T) {
	w := newWorld(t)
	d, err := w.policy(false).LookupMX(context.Background(), "unusable.example")
	if err != nil {
		t.Fatal(err)
	}
	h := d.Hosts[0]
	if h.Err != nil || h.Level != policy.Encrypt || len(h.TLSA) != 0 || h.Unusable != 2 || !h.RequiresTLS() {
		t.Fatalf("unusable only: %+v, want Encrypt with 2 unusable", h)
	}
	// Encrypt: TLS with no certificate check, never DANE verification.
	cfg, err := h.ClientConfig(nil, nil)
	if err != nil || cfg.VerifyConnection != nil || !cfg.InsecureSkipVerify {
		t.Fatalf("encrypt config: %v verify=%v", err, cfg.VerifyConnection != nil)
	}
	d, err = w.policy(true).LookupMX(context.Background(), "unusable.example")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(d.Hosts[0].Err, ErrDANERequired) {
		t.Errorf("dane-only, unusable only: %v", d.Hosts[0].Err)
	}
}

func TestCNAMEExpandedTLSABase(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	d, err := w.policy(false).LookupMX(ctx, "cname.example")
	if err != nil {
		t.Fatal(err)
	}
	h := d.Hosts[0]
	if h.TLSABase != "mx.provider.example" || h.ServerName() != "mx.provider.example" || h.Level != policy.DANE {
		t.Fatalf("expanded: %+v", h)
	}
	if want := "mx.provider.example,mx.cname.example,cname.example"; strings.Join(h.Names, ",") != want {
		t.Errorf("names %v, want %s", h.Names, want)
	}
	// No TLSA at the expanded name: the original name is tried.
	d, err = w.policy(false).LookupMX(ctx, "cname2.example")
	if err != nil {
		t.Fatal(err)
	}
	h = d.Hosts[0]
	if h.TLSABase != "mx.cname2.example" || h.Level != policy.DANE || w.f.count("", "_25._tcp.mx.bare.example", dns.TypeTLSA) != 1 {
		t.Fatalf("fallback to original name: %+v", h)
	}
}

func TestLookupFailuresDefer(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	d, err := w.policy(false).LookupMX(ctx, "partfail.example")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(d.Hosts[0].Err, ErrLookupFailed) || d.Hosts[1].Err != nil || d.Hosts[1].Level != policy.DANE {
		t.Fatalf("partfail: %+v / %+v", d.Hosts[0], d.Hosts[1])
	}
	d, err = w.policy(false).LookupMX(ctx, "addrfail.example")
	if err != nil || !errors.Is(d.Hosts[0].Err, ErrLookupFailed) {
		t.Fatalf("addrfail: %+v %v", d, err)
	}
	if _, err := w.policy(false).LookupMX(ctx, "mxfail.example"); !errors.Is(err, ErrLookupFailed) {
		t.Fatalf("mxfail: %v", err)
	}
	// A bogus TLSA RRset is not "no records": a LookupHost for it fails,
	// it does not fall back to May.
	h := w.policy(false).LookupHost(ctx, "mx.bogus.example.")
	if !errors.Is(h.Err, ErrLookupFailed) || ResultType(h.Err) != "dnssec-invalid" {
		t.Fatalf("LookupHost bogus: %+v", h)
	}
	h = w.policy(false).LookupHost(ctx, "MX1.secure.example")
	if h.Err != nil || h.Level != policy.DANE || h.Name != "mx1.secure.example" {
		t.Fatalf("LookupHost: %+v", h)
	}
}

func TestPolicyLookup(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	cases := []struct {
		domain    string
		mandatory bool
		level     policy.Level
		tlsa      int
		mxAuth    bool
		err       error
	}{
		{"secure.example", false, policy.DANE, 1, true, nil},
		{"secure.example", true, policy.DANEOnly, 1, true, nil},
		{"cname.example", false, policy.DANE, 1, true, nil},
		{"insecure.example", false, policy.May, 0, false, nil},
		{"insecure.example", true, policy.DANEOnly, 0, false, nil},
		{"insectlsa.example", false, policy.May, 0, true, nil},
		{"unusable.example", false, policy.Encrypt, 0, true, nil},
		{"unusable.example", true, policy.DANEOnly, 0, true, nil},
		{"partfail.example", false, policy.DANE, 1, true, nil},
		{"nomx.example", false, policy.DANE, 1, true, nil}, // implicit MX
		{"nullmx.example", false, policy.May, 0, true, nil},
		{"allfail.example", false, 0, 0, false, ErrLookupFailed},
		{"mxfail.example", true, 0, 0, false, ErrLookupFailed},
	}
	for _, c := range cases {
		req, err := w.policy(c.mandatory).Lookup(ctx, c.domain)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: got %v, want %v", c.domain, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.domain, err)
			continue
		}
		if req.Level != c.level || len(req.TLSA) != c.tlsa || req.MXAuthenticated != c.mxAuth ||
			req.Source != policy.SourceDANE || req.Domain != c.domain || req.Reason == "" || req.OnFailure != policy.Defer {
			t.Errorf("%s (mandatory=%v): %+v\n want level %v, %d TLSA, mxAuth %v", c.domain, c.mandatory, req, c.level, c.tlsa, c.mxAuth)
		}
	}
	// Requirement.TLSA is a copy of the most preferred secure host's records.
	req, _ := w.policy(false).Lookup(ctx, "secure.example")
	if FormatTLSA(req.TLSA[0]) != FormatTLSA(w.ee) {
		t.Errorf("TLSA %v, want mx1's record", req.TLSA)
	}
}

// A non-loopback resolver that is not marked trusted is never asked: DANE
// cannot apply, so no query is sent (the Exchange seam fails the test if
// called) and the decision says why.
func TestUntrustedResolverSendsNothing(t *testing.T) {
	for _, mandatory := range []bool{false, true} {
		p := &Policy{Mandatory: mandatory, Resolver: &Resolver{Addr: "192.0.2.53:53",
			Exchange: func(context.Context, string, *dns.Msg, string) (*dns.Msg, error) {
				t.Error("query sent to an untrusted resolver")
				return nil, errors.New("refused by test")
			}}}
		req, err := p.Lookup(context.Background(), "secure.example")
		if err != nil {
			t.Fatal(err)
		}
		want := policy.May
		if mandatory {
			want = policy.DANEOnly
		}
		if req.Level != want || len(req.TLSA) != 0 || req.MXAuthenticated || !strings.Contains(req.Reason, "not trusted") {
			t.Errorf("mandatory=%v: %+v", mandatory, req)
		}
	}
	// The same loopback fake DNS marked TrustNever: AD is set by the server
	// but ignored, so no DANE.
	w := newWorld(t)
	p := w.policy(false)
	p.Resolver.Trust = TrustNever
	d, err := p.LookupMX(context.Background(), "secure.example")
	if err != nil {
		t.Fatal(err)
	}
	if d.MXAuthentic || d.Hosts[0].Level != policy.May || len(d.Hosts[0].TLSA) != 0 {
		t.Fatalf("TrustNever: %+v", d)
	}
}

// End to end: DNS lookup on the fake resolver, then a real TLS handshake on
// loopback with the tls.Config the host decision builds.
func TestLookupThenHandshake(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	other := w.pki.leaf(t, certtest.LeafOptions{DNSNames: []string{"mx1.secure.example"}})
	for _, c := range []struct {
		domain string
		cert   *certtest.Leaf
		want   error
		sni    string
	}{
		{"secure.example", w.mx1, nil, "mx1.secure.example"},             // DANE-EE match
		{"secure.example", other, ErrNoMatch, "mx1.secure.example"},      // same name, other key
		{"cname.example", w.prov, nil, "mx.provider.example"},            // DANE-TA, next-hop name
		{"cname.example", other, ErrHostMismatch, "mx.provider.example"}, // DANE-TA, wrong name
	} {
		d, err := w.policy(true).LookupMX(ctx, c.domain)
		if err != nil {
			t.Fatal(err)
		}
		h := d.Hosts[0]
		sni, err := handshake(t, c.cert.TLS, &h, nil)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: handshake error %v, want %v", c.domain, err, c.want)
		}
		if sni != c.sni {
			t.Errorf("%s: SNI %q, want %q", c.domain, sni, c.sni)
		}
	}
}

// go-mockdns's server sets AD from Zone.AD; the resolver works with it too,
// so other packages' tests can fake DANE with it.
func TestWithGoMockDNS(t *testing.T) {
	leaf, err := certtest.SelfSigned("mx.mock.example")
	if err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, leaf.X509, UsageDANEEE, SelectorSPKI, MatchSHA512)
	srv, err := mockdns.NewServerWithLogger(map[string]mockdns.Zone{
		"mock.example.":    {AD: true, MX: []net.MX{{Host: "mx.mock.example.", Pref: 10}}},
		"mx.mock.example.": {AD: true, A: []string{"127.0.0.1"}},
		"_25._tcp.mx.mock.example.": {AD: true, Misc: map[dns.Type][]dns.RR{
			dns.Type(dns.TypeTLSA): {ToDNS("_25._tcp.mx.mock.example.", 60, rec)},
		}},
		"plain.example.":    {AD: false, MX: []net.MX{{Host: "mx.plain.example.", Pref: 10}}},
		"mx.plain.example.": {AD: false, A: []string{"127.0.0.1"}},
	}, discardLog{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p := &Policy{Resolver: &Resolver{Addr: srv.LocalAddr().String()}}
	req, err := p.Lookup(context.Background(), "mock.example")
	if err != nil {
		t.Fatal(err)
	}
	if req.Level != policy.DANE || len(req.TLSA) != 1 || !req.MXAuthenticated {
		t.Fatalf("mockdns with AD: %+v", req)
	}
	req, err = p.Lookup(context.Background(), "plain.example")
	if err != nil {
		t.Fatal(err)
	}
	if req.Level != policy.May || req.MXAuthenticated {
		t.Fatalf("mockdns without AD: %+v", req)
	}
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
