package dane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/policy"
)

func TestTrusted(t *testing.T) {
	cases := []struct {
		addr  string
		trust Trust
		want  bool
	}{
		{"", TrustLoopback, true}, // DefaultResolverAddr
		{"127.0.0.1:53", TrustLoopback, true},
		{"127.0.0.53:53", TrustLoopback, true},
		{"[::1]:5353", TrustLoopback, true},
		{"localhost:53", TrustLoopback, false}, // a name, not an address
		{"192.0.2.1:53", TrustLoopback, false},
		{"[2001:db8::1]:53", TrustLoopback, false},
		{"192.0.2.1", TrustLoopback, false}, // no port: unparsable
		{"192.0.2.1:53", TrustAlways, true},
		{"127.0.0.1:53", TrustNever, false},
		{"127.0.0.1:53", Trust(42), false},
	}
	for _, c := range cases {
		r := &Resolver{Addr: c.addr, Trust: c.trust}
		if got := r.Trusted(); got != c.want {
			t.Errorf("Resolver{Addr: %q, Trust: %v}.Trusted() = %v, want %v", c.addr, c.trust, got, c.want)
		}
	}
	var nilR *Resolver
	if !nilR.Trusted() {
		t.Error("nil Resolver (default loopback) not trusted")
	}
}

func TestQueryAuthenticOnlyWithADFromTrustedResolver(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{
		"signed.example.":   {AD: true, RRs: []dns.RR{rrA("192.0.2.10")}},
		"unsigned.example.": {AD: false, RRs: []dns.RR{rrA("192.0.2.11")}},
	})
	ctx := context.Background()
	r := &Resolver{Addr: f.addr}
	a, err := r.Query(ctx, "Signed.Example", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Authentic || len(a.Records) != 1 || a.Name != "signed.example." {
		t.Fatalf("signed: %+v", a)
	}
	a, err = r.Query(ctx, "unsigned.example", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if a.Authentic || len(a.Records) != 1 {
		t.Fatalf("unsigned: authentic=%v records=%d", a.Authentic, len(a.Records))
	}
	// The same loopback resolver marked untrusted: AD is ignored.
	untrusted := &Resolver{Addr: f.addr, Trust: TrustNever}
	a, err = untrusted.Query(ctx, "signed.example", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if a.Authentic {
		t.Fatal("AD believed from an untrusted resolver")
	}
	// Every query asked for DNSSEC: DO bit, AD bit, EDNS buffer.
	qs := f.queries()
	if len(qs) != 3 {
		t.Fatalf("%d queries, want 3", len(qs))
	}
	for _, q := range qs {
		if !q.DO || !q.AD || q.EDNS != 1232 || q.Net != "udp" {
			t.Errorf("query %+v: want DO, AD, EDNS 1232 over UDP", q)
		}
	}
}

func TestQueryDenials(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{
		"nodata.example.":   {AD: true, RRs: []dns.RR{rrA("192.0.2.1")}},
		"insecure.example.": {AD: false},
	})
	ctx := context.Background()
	r := &Resolver{Addr: f.addr}
	// Authenticated NODATA.
	a, err := r.Query(ctx, "nodata.example", dns.TypeTLSA)
	if err != nil || !a.Authentic || a.NXDomain || len(a.Records) != 0 {
		t.Fatalf("nodata: %+v %v", a, err)
	}
	// Insecure NODATA.
	a, err = r.Query(ctx, "insecure.example", dns.TypeTLSA)
	if err != nil || a.Authentic || len(a.Records) != 0 {
		t.Fatalf("insecure nodata: %+v %v", a, err)
	}
	// Authenticated and insecure NXDOMAIN.
	f.setNXAD(true)
	a, err = r.Query(ctx, "missing.example", dns.TypeTLSA)
	if err != nil || !a.Authentic || !a.NXDomain {
		t.Fatalf("secure nxdomain: %+v %v", a, err)
	}
	f.setNXAD(false)
	a, err = r.Query(ctx, "missing.example", dns.TypeTLSA)
	if err != nil || a.Authentic || !a.NXDomain {
		t.Fatalf("insecure nxdomain: %+v %v", a, err)
	}
}

func TestQueryServFailIsAnError(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{
		"bogus.example.": {ServFail: true},
	})
	r := &Resolver{Addr: f.addr}
	a, err := r.Query(context.Background(), "bogus.example", dns.TypeTLSA)
	if err == nil {
		t.Fatalf("SERVFAIL returned an answer: %+v", a)
	}
	var le *LookupError
	if !errors.Is(err, ErrLookupFailed) || !errors.As(err, &le) || le.Rcode != dns.RcodeServerFailure || le.Type != "TLSA" {
		t.Fatalf("got %v, want a LookupError with SERVFAIL wrapping ErrLookupFailed", err)
	}
	if ResultType(err) != "dnssec-invalid" {
		t.Errorf("ResultType = %q", ResultType(err))
	}
	// By contrast NXDOMAIN (the name is not in the zone map) is an answer.
	if res, err := r.LookupTLSA(context.Background(), "mx.bogus.example", 25); err != nil || len(res.Records) != 0 {
		t.Errorf("NXDOMAIN: got %+v, %v; want no records and no error", res, err)
	}
}

// A TLSA RRset too large for a 1232-byte UDP answer arrives truncated; the
// resolver must retry over TCP and get all of it (RFC 7766 §5).
func TestTruncationFallsBackToTCP(t *testing.T) {
	var recs []dns.RR
	var want []policy.TLSA
	for range 6 {
		l, err := certtest.SelfSigned("mx.example.com")
		if err != nil {
			t.Fatal(err)
		}
		rec, err := Record(l.X509, UsageDANEEE, SelectorCert, MatchFull) // ~400 bytes each
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, rec)
		recs = append(recs, ToDNS("x.", 0, rec))
	}
	f := startFakeDNS(t, map[string]fakeZone{"_25._tcp.mx.example.com.": {AD: true, RRs: recs}})
	r := &Resolver{Addr: f.addr}
	res, err := r.LookupTLSA(context.Background(), "mx.example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Authentic || len(res.Records) != len(want) {
		t.Fatalf("authentic=%v records=%d, want %d", res.Authentic, len(res.Records), len(want))
	}
	for i := range want {
		if FormatTLSA(res.Records[i]) != FormatTLSA(want[i]) {
			t.Errorf("record %d differs", i)
		}
	}
	qs := f.queries()
	if len(qs) != 2 || qs[0].Net != "udp" || !qs[0].Trunc || qs[1].Net != "tcp" {
		t.Fatalf("queries %+v: want a truncated UDP answer then TCP", qs)
	}
}

func TestQueryTimeoutAndContext(t *testing.T) {
	// A UDP socket that never answers.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := &Resolver{Addr: pc.LocalAddr().String(), Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err = r.Query(context.Background(), "example.com", dns.TypeMX)
	if !errors.Is(err, ErrLookupFailed) {
		t.Fatalf("got %v, want ErrLookupFailed", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout of 200ms took %v", d)
	}
	// A cancelled context ends the query at once, with a long Timeout.
	r.Timeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = r.Query(ctx, "example.com", dns.TypeMX)
	if !errors.Is(err, ErrLookupFailed) || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled: got %v after %v", err, time.Since(start))
	}
}

func TestQueryRejectsMismatchedAnswer(t *testing.T) {
	r := &Resolver{Addr: "127.0.0.1:1", Exchange: func(_ context.Context, _ string, m *dns.Msg, _ string) (*dns.Msg, error) {
		resp := new(dns.Msg)
		resp.SetReply(m)
		resp.Question[0].Name = "other.example."
		resp.AuthenticatedData = true
		return resp, nil
	}}
	if _, err := r.Query(context.Background(), "example.com", dns.TypeMX); !errors.Is(err, ErrLookupFailed) {
		t.Fatalf("got %v, want ErrLookupFailed for an answer to another question", err)
	}
	if _, err := r.Query(context.Background(), "bad..name", dns.TypeMX); !errors.Is(err, ErrLookupFailed) {
		t.Fatalf("invalid name: got %v", err)
	}
}

func TestLookupMXAndAddrs(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{
		"example.com.":      {AD: true, RRs: []dns.RR{rrMX(20, "MX2.example.com"), rrMX(10, "mx1.example.com."), rrMX(20, "mx3.example.com")}},
		"implicit.example.": {AD: true, RRs: []dns.RR{rrA("192.0.2.7")}},
		"null.example.":     {AD: true, RRs: []dns.RR{rrMX(0, ".")}},
		"alias.example.":    {AD: true, CNAME: "example.com"},
		"mx1.example.com.":  {AD: true, RRs: []dns.RR{rrA("192.0.2.1"), rrAAAA("2001:db8::1")}},
		"www.example.com.":  {AD: false, CNAME: "mx1.example.com"},
	})
	ctx := context.Background()
	r := &Resolver{Addr: f.addr}
	mx, err := r.LookupMX(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := []MX{{"mx1.example.com", 10}, {"mx2.example.com", 20}, {"mx3.example.com", 20}}
	if !mx.Authentic || mx.Implicit || mx.Null || len(mx.Hosts) != 3 {
		t.Fatalf("mx: %+v", mx)
	}
	for i := range want {
		if mx.Hosts[i] != want[i] {
			t.Errorf("host %d = %+v, want %+v", i, mx.Hosts[i], want[i])
		}
	}
	mx, err = r.LookupMX(ctx, "implicit.example")
	if err != nil || !mx.Implicit || len(mx.Hosts) != 1 || mx.Hosts[0].Host != "implicit.example" {
		t.Fatalf("implicit: %+v %v", mx, err)
	}
	mx, err = r.LookupMX(ctx, "null.example")
	if err != nil || !mx.Null || len(mx.Hosts) != 0 {
		t.Fatalf("null: %+v %v", mx, err)
	}
	mx, err = r.LookupMX(ctx, "nosuch.example")
	if err != nil || !mx.NXDomain || len(mx.Hosts) != 0 {
		t.Fatalf("nxdomain: %+v %v", mx, err)
	}
	mx, err = r.LookupMX(ctx, "alias.example")
	if err != nil || mx.Canonical != "example.com" || mx.Domain != "alias.example" || len(mx.Hosts) != 3 || !mx.Authentic {
		t.Fatalf("alias: %+v %v", mx, err)
	}

	ad, err := r.LookupAddrs(ctx, "mx1.example.com")
	if err != nil || !ad.Authentic || len(ad.Addrs) != 2 ||
		ad.Addrs[0] != netip.MustParseAddr("192.0.2.1") || ad.Addrs[1] != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("addrs: %+v %v", ad, err)
	}
	// An insecure CNAME in front of a secure host makes the answer insecure.
	ad, err = r.LookupAddrs(ctx, "www.example.com")
	if err != nil || ad.Authentic || ad.Canonical != "mx1.example.com" || len(ad.Addrs) != 2 {
		t.Fatalf("insecure cname: %+v %v", ad, err)
	}
}

// TestSortMX pins sortMX's order: by preference, lowest first, and stable,
// so that hosts of equal preference keep their order in the DNS answer
// (MXResult.Hosts).
func TestSortMX(t *testing.T) {
	tests := []struct {
		name string
		in   []MX
		want []MX
	}{
		{"empty", nil, nil},
		{"one", []MX{{"a", 5}}, []MX{{"a", 5}}},
		{"sorted", []MX{{"a", 0}, {"b", 10}, {"c", 65535}}, []MX{{"a", 0}, {"b", 10}, {"c", 65535}}},
		{"descending", []MX{{"c", 65535}, {"b", 10}, {"a", 0}}, []MX{{"a", 0}, {"b", 10}, {"c", 65535}}},
		{
			"ties keep answer order, not name order",
			[]MX{{"z", 20}, {"y", 10}, {"x", 20}, {"w", 10}, {"v", 0}, {"u", 20}},
			[]MX{{"v", 0}, {"y", 10}, {"w", 10}, {"z", 20}, {"x", 20}, {"u", 20}},
		},
		{"all equal", []MX{{"c", 7}, {"a", 7}, {"b", 7}}, []MX{{"c", 7}, {"a", 7}, {"b", 7}}},
	}
	// Many hosts in descending preference with ties: the audit's slow case
	// for the old insertion sort. The result is built by bucketing.
	var many, manyWant []MX
	buckets := make([][]MX, 16)
	for i := range 4000 {
		m := MX{Host: fmt.Sprintf("h%d", i), Pref: uint16(15 - i*16/4000)}
		many = append(many, m)
		buckets[m.Pref] = append(buckets[m.Pref], m)
	}
	for _, b := range buckets {
		manyWant = append(manyWant, b...)
	}
	tests = append(tests, struct {
		name string
		in   []MX
		want []MX
	}{"4000 descending with ties", many, manyWant})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Clone(tt.in)
			sortMX(got)
			if len(got) != len(tt.want) {
				t.Fatalf("sortMX gave %d hosts, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("host %d = %+v, want %+v (input %.200v)", i, got[i], tt.want[i], tt.in)
				}
			}
		})
	}
}
