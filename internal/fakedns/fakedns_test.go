package fakedns

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func exchange(t *testing.T, addr, name string, qt uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qt)
	m.SetEdns0(1232, true)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServer(t *testing.T) {
	s := Start(t, map[string]Zone{
		"Signed.Example":      {AD: true, RRs: []dns.RR{MX(10, "mx.signed.example")}},
		"mx.signed.example.":  {AD: true, RRs: []dns.RR{A("192.0.2.1")}},
		"alias.example":       {AD: true, CNAME: "plain.example"},
		"plain.example":       {RRs: []dns.RR{A("192.0.2.2"), TXT("v=STSv1; id=1;")}},
		"bogus.example":       {ServFail: true},
		"_25._tcp.mx.example": {AD: true, RRs: []dns.RR{TLSA(3, 1, 1, make([]byte, 32))}},
	})
	if r := exchange(t, s.Addr, "signed.example", dns.TypeMX); !r.AuthenticatedData || len(r.Answer) != 1 {
		t.Errorf("signed MX: %v", r)
	}
	// AD only if every name on the CNAME chain is signed.
	if r := exchange(t, s.Addr, "alias.example", dns.TypeA); r.AuthenticatedData || len(r.Answer) != 2 {
		t.Errorf("alias: %v", r)
	}
	if r := exchange(t, s.Addr, "bogus.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("bogus: %v", r)
	}
	if r := exchange(t, s.Addr, "_25._tcp.mx.example", dns.TypeTLSA); len(r.Answer) != 1 || !r.AuthenticatedData {
		t.Errorf("TLSA: %v", r)
	}
	if r := exchange(t, s.Addr, "missing.example", dns.TypeA); r.Rcode != dns.RcodeNameError || r.AuthenticatedData {
		t.Errorf("NXDOMAIN without AD: %v", r)
	}
	s.SetNXAD(true)
	if r := exchange(t, s.Addr, "missing.example", dns.TypeA); r.Rcode != dns.RcodeNameError || !r.AuthenticatedData {
		t.Errorf("authenticated NXDOMAIN: %v", r)
	}
	if n := s.Count("udp", "missing.example", dns.TypeA); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}

	// The standard resolver, pointed at the server.
	ctx := context.Background()
	res := s.Resolver()
	mx, err := res.LookupMX(ctx, "signed.example")
	if err != nil || len(mx) != 1 || mx[0].Host != "mx.signed.example." {
		t.Errorf("LookupMX = %v, %v", mx, err)
	}
	txt, err := res.LookupTXT(ctx, "plain.example")
	if err != nil || len(txt) != 1 || txt[0] != "v=STSv1; id=1;" {
		t.Errorf("LookupTXT = %v, %v", txt, err)
	}
	_, err = res.LookupIPAddr(ctx, "missing.example")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("LookupIPAddr(missing) = %v, want not found", err)
	}
}
