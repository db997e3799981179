package dane

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/policy"
)

// Under one Memo, Policy.Lookup (what policy.Standard asks) and
// Policy.LookupMX (what a Connector asks) send each query once; without a
// Memo every call asks again.
func TestMemoOneQueryPerAttempt(t *testing.T) {
	w := newWorld(t)
	p := &Policy{Resolver: &Resolver{Addr: w.f.addr}}
	names := []struct {
		name string
		qt   uint16
	}{{"secure.example", dns.TypeMX}, {"mx1.secure.example", dns.TypeA}, {"mx1.secure.example", dns.TypeAAAA},
		{"_25._tcp.mx1.secure.example", dns.TypeTLSA}}
	counts := func() []int {
		var out []int
		for _, n := range names {
			out = append(out, w.f.count("", n.name, n.qt))
		}
		return out
	}

	var m Memo
	ctx := WithMemo(context.Background(), &m)
	if _, err := p.Lookup(ctx, "secure.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.LookupMX(ctx, "secure.example"); err != nil {
		t.Fatal(err)
	}
	if got := counts(); !slices.Equal(got, []int{1, 1, 1, 1}) {
		t.Errorf("queries under one Memo: %v, want one each", got)
	}
	if m.Len() == 0 {
		t.Error("the Memo holds nothing")
	}

	if _, err := p.LookupMX(context.Background(), "secure.example"); err != nil {
		t.Fatal(err)
	}
	if got := counts(); !slices.Equal(got, []int{2, 2, 2, 2}) {
		t.Errorf("queries after a lookup without the Memo: %v, want two each", got)
	}
}

// A SERVFAIL is remembered like an answer: one query per attempt. A query
// cut short by its context's cancellation is not remembered.
func TestMemoRemembersFailuresNotCancellation(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{"bogus.example.": {ServFail: true}})
	r := &Resolver{Addr: f.addr}
	var m Memo
	ctx := WithMemo(context.Background(), &m)
	for range 3 {
		if _, err := r.Query(ctx, "bogus.example", dns.TypeA); !errors.Is(err, ErrLookupFailed) {
			t.Fatalf("err = %v, want ErrLookupFailed", err)
		}
	}
	if n := f.count("", "bogus.example", dns.TypeA); n != 1 {
		t.Errorf("%d queries for a SERVFAIL name under one Memo, want 1", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Query(cctx, "cancelled.example", dns.TypeA); err == nil {
		t.Fatal("a cancelled query succeeded")
	}
	if _, err := r.Query(ctx, "cancelled.example", dns.TypeA); err != nil {
		t.Fatalf("the cancelled query was remembered: %v", err)
	}
}

// Concurrent queries for the same name under one Memo send one query.
func TestMemoConcurrent(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{"a.example.": {AD: true, RRs: []dns.RR{rrA("192.0.2.1")}}})
	r := &Resolver{Addr: f.addr}
	ctx := WithMemo(context.Background(), &Memo{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if a, err := r.Query(ctx, "a.example", dns.TypeA); err != nil || len(a.Records) != 1 || !a.Authentic {
				t.Errorf("answer %+v, %v", a, err)
			}
		})
	}
	wg.Wait()
	if n := f.count("", "a.example", dns.TypeA); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}

// A Policy without Resolver uses the delivery's *Resolver from the
// context (policy.WithResolver), so that a Connector's one DNS setting
// reaches it.
func TestPolicyResolverFromContext(t *testing.T) {
	w := newWorld(t)
	p := &Policy{}
	ctx := policy.WithResolver(context.Background(), &Resolver{Addr: w.f.addr})
	req, err := p.Lookup(ctx, "secure.example")
	if err != nil || req.Level != policy.DANE {
		t.Fatalf("Lookup through the context's resolver: %s, %v", req, err)
	}
	if n := w.f.count("", "secure.example", dns.TypeMX); n != 1 {
		t.Errorf("%d MX queries at the context's resolver, want 1", n)
	}
}

// When the lookups of every MX host fail, Policy.Lookup names the first
// host in a *HostError that still matches ErrLookupFailed.
func TestLookupAllHostsFailedNamesHost(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{
		"d.example.":             {AD: true, RRs: []dns.RR{rrMX(10, "mx.d.example")}},
		"mx.d.example.":          {AD: true, RRs: []dns.RR{rrA("192.0.2.1")}},
		"_25._tcp.mx.d.example.": {ServFail: true},
	})
	p := &Policy{Resolver: &Resolver{Addr: f.addr}}
	_, err := p.Lookup(context.Background(), "d.example")
	var he *HostError
	if !errors.As(err, &he) || he.Host != "mx.d.example" || !errors.Is(err, ErrLookupFailed) || ResultType(err) != policy.FailureDNSSECInvalid {
		t.Fatalf("err = %v, want a HostError for mx.d.example wrapping ErrLookupFailed", err)
	}
}

// LookupTXT and LookupIPAddr follow net.Resolver's conventions, so that a
// *Resolver can serve MTA-STS discovery (policy.Resolver).
func TestNetStyleLookups(t *testing.T) {
	f := startFakeDNS(t, map[string]fakeZone{
		"_mta-sts.t.example.": {RRs: []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Rrtype: dns.TypeTXT}, Txt: []string{"v=STSv1; ", "id=1;"}}}},
		"h.example.":          {RRs: []dns.RR{rrA("192.0.2.7"), rrAAAA("2001:db8::7")}},
		"broken.example.":     {ServFail: true},
	})
	var r policy.Resolver = &Resolver{Addr: f.addr}
	ctx := context.Background()
	txt, err := r.LookupTXT(ctx, "_mta-sts.t.example.")
	if err != nil || !slices.Equal(txt, []string{"v=STSv1; id=1;"}) {
		t.Errorf("LookupTXT = %q, %v", txt, err)
	}
	var de *net.DNSError
	if _, err := r.LookupTXT(ctx, "_mta-sts.none.example."); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("LookupTXT of a missing name: %v, want IsNotFound", err)
	}
	if _, err := r.LookupTXT(ctx, "broken.example"); !errors.As(err, &de) || de.IsNotFound || !errors.Is(err, ErrLookupFailed) {
		t.Errorf("LookupTXT of a SERVFAIL name: %v, want a temporary DNSError wrapping ErrLookupFailed", err)
	}
	ips, err := r.LookupIPAddr(ctx, "h.example")
	if err != nil || len(ips) != 2 || !ips[0].IP.Equal(net.ParseIP("192.0.2.7")) || !ips[1].IP.Equal(net.ParseIP("2001:db8::7")) {
		t.Errorf("LookupIPAddr = %v, %v", ips, err)
	}
	if _, err := r.LookupIPAddr(ctx, "none.example"); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("LookupIPAddr of a missing name: %v, want IsNotFound", err)
	}
	if ips, err := r.LookupIPAddr(ctx, "192.0.2.9"); err != nil || len(ips) != 1 || ips[0].IP.String() != "192.0.2.9" {
		t.Errorf("LookupIPAddr of a literal = %v, %v", ips, err)
	}
}
