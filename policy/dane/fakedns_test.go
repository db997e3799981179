package dane

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeZone is what the fake resolver knows about one owner name.
type fakeZone struct {
	AD       bool     // set the AD bit on answers touching this name
	ServFail bool     // answer SERVFAIL (a validating resolver's "bogus")
	CNAME    string   // alias target; followed like a recursive resolver would
	RRs      []dns.RR // records of any type; owner names are rewritten
}

// fakeDNS is a small recursive-resolver impersonation on loopback (UDP and
// TCP on the same port), built from a struct of maps as mox's mock resolver
// is. Unlike go-mockdns it sets AD per zone on every kind of answer
// (including authenticated NXDOMAIN), answers SERVFAIL, and truncates UDP
// answers larger than the client's EDNS buffer so that TCP fallback can be
// tested.
type fakeDNS struct {
	Zones map[string]fakeZone // keyed by lower-case FQDN; not changed after start

	addr string
	mu   sync.Mutex
	nxAD bool // set AD on NXDOMAIN answers for names not in Zones
	log  []fakeQuery
}

// setNXAD says whether NXDOMAIN answers for unknown names are authenticated.
func (f *fakeDNS) setNXAD(v bool) {
	f.mu.Lock()
	f.nxAD = v
	f.mu.Unlock()
}

type fakeQuery struct {
	Net   string // "udp" or "tcp"
	Name  string
	Type  uint16
	DO    bool
	AD    bool
	EDNS  uint16
	Trunc bool // the reply was truncated
}

func startFakeDNS(t *testing.T, zones map[string]fakeZone) *fakeDNS {
	t.Helper()
	f := &fakeDNS{Zones: zones}
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", tl.Addr().String())
	if err != nil {
		tl.Close()
		t.Fatal(err)
	}
	f.addr = tl.Addr().String()
	udp := &dns.Server{PacketConn: pc, Handler: f}
	tcp := &dns.Server{Listener: tl, Handler: f}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ActivateAndServe()
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("fake DNS server did not start")
		}
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return f
}

func (f *fakeDNS) queries() []fakeQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeQuery(nil), f.log...)
}

// count returns how many queries for name (any case, with or without the
// final dot) of type qt were received over network ("" for any).
func (f *fakeDNS) count(network, name string, qt uint16) int {
	n := 0
	for _, q := range f.queries() {
		if (network == "" || q.Net == network) && strings.EqualFold(q.Name, dns.Fqdn(name)) && q.Type == qt {
			n++
		}
	}
	return n
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	q := req.Question[0]
	network := w.LocalAddr().Network()
	fq := fakeQuery{Net: network, Name: q.Name, Type: q.Qtype, AD: req.AuthenticatedData}
	if o := req.IsEdns0(); o != nil {
		fq.DO, fq.EDNS = o.Do(), o.UDPSize()
		m.SetEdns0(4096, o.Do())
	}
	name := strings.ToLower(q.Name)
	ad := true
	for range 10 {
		z, ok := f.Zones[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
			f.mu.Lock()
			ad = ad && f.nxAD
			f.mu.Unlock()
			break
		}
		if z.ServFail {
			m.Rcode, m.Answer, ad = dns.RcodeServerFailure, nil, false
			break
		}
		ad = ad && z.AD
		if z.CNAME != "" && q.Qtype != dns.TypeCNAME {
			target := strings.ToLower(dns.Fqdn(z.CNAME))
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target})
			name = target
			continue
		}
		for _, rr := range z.RRs {
			if rr.Header().Rrtype == q.Qtype {
				rr = dns.Copy(rr)
				rr.Header().Name, rr.Header().Class, rr.Header().Ttl = name, dns.ClassINET, 60
				m.Answer = append(m.Answer, rr)
			}
		}
		break
	}
	m.AuthenticatedData = ad
	if network == "udp" {
		size := dns.MinMsgSize
		if fq.EDNS > 0 {
			size = int(fq.EDNS)
		}
		if m.Len() > size {
			m.Truncate(size)
		}
		fq.Trunc = m.Truncated
	}
	f.mu.Lock()
	f.log = append(f.log, fq)
	f.mu.Unlock()
	w.WriteMsg(m)
}

// RR helpers for building zones.

func rrA(ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA}, A: net.ParseIP(ip).To4()}
}

func rrAAAA(ip string) dns.RR {
	return &dns.AAAA{Hdr: dns.RR_Header{Rrtype: dns.TypeAAAA}, AAAA: net.ParseIP(ip)}
}

func rrMX(pref uint16, host string) dns.RR {
	return &dns.MX{Hdr: dns.RR_Header{Rrtype: dns.TypeMX}, Preference: pref, Mx: dns.Fqdn(host)}
}
