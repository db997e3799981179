package transporttest

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
)

func TestResolverLookups(t *testing.T) {
	ctx := context.Background()
	long := "v=STSv1; id=" + strings.Repeat("x", 300)
	leaf := MustCA("dns").MustIssue(LeafOptions{DNSNames: []string{"mx1.example.test"}})
	r := NewResolver(t, map[string]Zone{
		"example.test":              {MX: []net.MX{{Host: "mx2.example.test", Pref: 20}, {Host: "mx1.example.test.", Pref: 10}}, Secure: true},
		"mx1.example.test":          {Addrs: []string{"192.0.2.1", "2001:db8::1"}, Secure: true},
		"mx2.example.test":          {Addrs: []string{"192.0.2.2"}},
		"_mta-sts.example.test":     {TXT: []string{long, "second"}},
		"_25._tcp.mx1.example.test": {TLSA: []policy.TLSA{TLSAFor(leaf.X509)}, Secure: true},
		"_25._tcp.mx2.example.test": {TLSA: []policy.TLSA{TLSAFor(leaf.X509)}},
		"alias.example.test":        {CNAME: "mx2.example.test"},
		"bogus.example.test":        {ServFail: true},
	})

	mx, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.example.test." || mx[0].Pref != 10 || mx[1].Host != "mx2.example.test." {
		t.Errorf("MX: %v %v", mx, err)
	}
	addrs, err := r.LookupIPAddr(ctx, "mx1.example.test")
	var got []string
	for _, a := range addrs {
		got = append(got, a.IP.String())
	}
	if err != nil || !reflect.DeepEqual(sorted(got), []string{"192.0.2.1", "2001:db8::1"}) {
		t.Errorf("addresses: %v %v", got, err)
	}
	if a, err := r.LookupIPAddr(ctx, "2001:db8::7"); err != nil || len(a) != 1 || a[0].IP.String() != "2001:db8::7" || len(r.Queries()) != 3 {
		t.Errorf("IP literal: %v %v, queries %v (want no query)", a, err, r.Queries())
	}
	if a, err := r.LookupIPAddr(ctx, "alias.example.test"); err != nil || len(a) != 1 || a[0].IP.String() != "192.0.2.2" {
		t.Errorf("through CNAME: %v %v", a, err)
	}
	txt, err := r.LookupTXT(ctx, "_mta-sts.example.test")
	if err != nil || !reflect.DeepEqual(sorted(txt), []string{"second", long}) {
		t.Errorf("TXT: %q %v", txt, err)
	}
	for _, name := range []string{"nowhere.example.test", "mx2.example.test"} {
		_, err := r.LookupTXT(ctx, name)
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("TXT %s: %v, want not found", name, err)
		}
	}
	if _, err := r.LookupMX(ctx, "bogus.example.test"); err == nil {
		t.Error("SERVFAIL name answered")
	}

	// The DNSSEC view: AD only for Secure zones, SERVFAIL as a lookup
	// failure, the TLSA data as published.
	sec := r.DNSSEC()
	a, err := sec.Query(ctx, "_25._tcp.mx1.example.test", dns.TypeTLSA)
	if err != nil || !a.Authentic || len(a.Records) != 1 {
		t.Fatalf("secure TLSA: %+v %v", a, err)
	}
	if tl, err := dane.FromDNS(a.Records[0].(*dns.TLSA)); err != nil || !reflect.DeepEqual(tl, TLSAFor(leaf.X509)) {
		t.Errorf("TLSA %+v %v", tl, err)
	}
	if a, err := sec.Query(ctx, "_25._tcp.mx2.example.test", dns.TypeTLSA); err != nil || a.Authentic {
		t.Errorf("unsigned TLSA: %+v %v, want records without AD", a, err)
	}
	if _, err := sec.Query(ctx, "bogus.example.test", dns.TypeMX); !errors.Is(err, dane.ErrLookupFailed) {
		t.Errorf("bogus: %v, want ErrLookupFailed", err)
	}

	if err := r.Set("mx2.example.test", Zone{Addrs: []string{"192.0.2.9"}}); err != nil {
		t.Fatal(err)
	}
	if a, err := r.LookupIPAddr(ctx, "mx2.example.test"); err != nil || len(a) != 1 || a[0].IP.String() != "192.0.2.9" {
		t.Errorf("after Set: %v %v", a, err)
	}
	if err := r.Set("x.example.test", Zone{Addrs: []string{"not-an-ip"}}); err == nil {
		t.Error("Set accepted a bad address")
	}
	var sawTLSA bool
	for _, q := range r.Queries() {
		if q.Name == "_25._tcp.mx1.example.test." && q.Type == "TLSA" {
			sawTLSA = true
		}
	}
	if !sawTLSA {
		t.Errorf("queries %v lack the TLSA query", r.Queries())
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestTLSAFor(t *testing.T) {
	leaf := MustCA("tlsa").MustIssue(LeafOptions{DNSNames: []string{"mx.example.test"}})
	got := TLSAFor(leaf.X509)
	want, _ := dane.Association(leaf.X509, dane.SelectorSPKI, dane.MatchSHA256)
	if got.Usage != 3 || got.Selector != 1 || got.MatchingType != 1 || !reflect.DeepEqual(got.Data, want) {
		t.Errorf("TLSAFor = %+v", got)
	}
}
