package dane

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
)

// The fake recursive resolver is internal/fakedns, shared with the
// transport tests: a struct of maps on loopback (UDP and TCP) that sets AD
// per zone, answers SERVFAIL, follows CNAMEs and truncates UDP answers
// larger than the client's EDNS buffer so that TCP fallback can be tested.

type fakeZone = fakedns.Zone

type fakeDNS struct {
	*fakedns.Server
	addr string
}

func startFakeDNS(t *testing.T, zones map[string]fakeZone) *fakeDNS {
	t.Helper()
	s := fakedns.Start(t, zones)
	return &fakeDNS{Server: s, addr: s.Addr}
}

func (f *fakeDNS) setNXAD(v bool)           { f.SetNXAD(v) }
func (f *fakeDNS) queries() []fakedns.Query { return f.Queries() }

// count returns how many queries for name (any case, with or without the
// final dot) of type qt were received over network ("" for any).
func (f *fakeDNS) count(network, name string, qt uint16) int { return f.Count(network, name, qt) }

// RR helpers for building zones.

func rrA(ip string) dns.RR                 { return fakedns.A(ip) }
func rrAAAA(ip string) dns.RR              { return fakedns.AAAA(ip) }
func rrMX(pref uint16, host string) dns.RR { return fakedns.MX(pref, host) }
