// Package fakedns is a recursive-resolver impersonation on loopback for
// tests: a struct of maps served over UDP and TCP by github.com/miekg/dns,
// with the AD (Authenticated Data) bit set per zone, SERVFAIL answers (a
// validating resolver's "bogus"), CNAME following and authenticated or
// unauthenticated NXDOMAIN. Unlike go-mockdns it lets a test say which
// answers DNSSEC validated, which DANE (RFC 7672) and REQUIRETLS (RFC 8689)
// depend on.
//
// It serves only 127.0.0.1 and never forwards a query anywhere.
package fakedns

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is what the fake resolver knows about one owner name.
type Zone struct {
	AD       bool     // set the AD bit on answers touching this name
	ServFail bool     // answer SERVFAIL
	CNAME    string   // alias target, followed as a recursive resolver would
	RRs      []dns.RR // records of any type; owner names are rewritten
}

// Query is one query the server received.
type Query struct {
	Net   string // "udp" or "tcp"
	Name  string
	Type  uint16
	DO    bool   // the EDNS DO bit was set
	AD    bool   // the AD bit was set in the query
	EDNS  uint16 // the EDNS UDP buffer size, 0 without EDNS
	Trunc bool   // the (UDP) reply was truncated
}

// Server is a running fake resolver. Its methods are safe for concurrent
// use.
type Server struct {
	// Addr is "127.0.0.1:port", for UDP and TCP alike.
	Addr string

	wg        sync.WaitGroup
	close     func()
	closeOnce sync.Once

	mu    sync.Mutex
	zones map[string]Zone
	nxAD  bool
	log   []Query
}

// Start starts a server answering from zones (keyed by owner name, with or
// without the final dot, any case) and stops it when tb's test ends.
func Start(tb testing.TB, zones map[string]Zone) *Server {
	tb.Helper()
	s, err := Listen(zones)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Listen is Start for use outside tests: the caller must Close the server.
func Listen(zones map[string]Zone) (*Server, error) {
	s := &Server{zones: map[string]Zone{}}
	for n, z := range zones {
		s.zones[key(n)] = z
	}
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp4", tl.Addr().String())
	if err != nil {
		tl.Close()
		return nil, err
	}
	s.Addr = tl.Addr().String()
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: tl, Handler: s}
	s.close = func() {
		udp.Shutdown()
		tcp.Shutdown()
		s.wg.Wait()
	}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			srv.ActivateAndServe()
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			tl.Close()
			pc.Close()
			return nil, errors.New("fakedns: server did not start")
		}
	}
	return s, nil
}

// Close stops the server and waits for it to end. It is safe to call more
// than once.
func (s *Server) Close() { s.closeOnce.Do(s.close) }

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// Set adds or replaces the zone for name.
func (s *Server) Set(name string, z Zone) {
	s.mu.Lock()
	s.zones[key(name)] = z
	s.mu.Unlock()
}

// SetNXAD says whether NXDOMAIN answers for unknown names carry AD.
func (s *Server) SetNXAD(v bool) {
	s.mu.Lock()
	s.nxAD = v
	s.mu.Unlock()
}

// Queries returns the queries received so far.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.log...)
}

// Count returns how many queries for name of type qt were received over
// network ("udp", "tcp", or "" for either).
func (s *Server) Count(network, name string, qt uint16) int {
	n := 0
	for _, q := range s.Queries() {
		if (network == "" || q.Net == network) && strings.EqualFold(q.Name, dns.Fqdn(name)) && q.Type == qt {
			n++
		}
	}
	return n
}

// Resolver returns a *net.Resolver (pure Go) that sends every query to s,
// for code that takes the standard resolver (MX, A/AAAA, TXT lookups).
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr)
		},
	}
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	network := w.LocalAddr().Network()
	fq := Query{Net: network, Name: q.Name, Type: q.Qtype, AD: req.AuthenticatedData}
	if o := req.IsEdns0(); o != nil {
		fq.DO, fq.EDNS = o.Do(), o.UDPSize()
		m.SetEdns0(4096, o.Do())
	}
	name := strings.ToLower(q.Name)
	ad := true
	s.mu.Lock()
	for range 10 {
		z, ok := s.zones[name]
		if !ok {
			// RFC 6604 §2.1: the rcode is that of the last name in a CNAME chain.
			m.Rcode = dns.RcodeNameError
			ad = ad && s.nxAD
			break
		}
		if z.ServFail {
			m.Rcode, m.Answer, ad = dns.RcodeServerFailure, nil, false
			break
		}
		ad = ad && z.AD
		if z.CNAME != "" && q.Qtype != dns.TypeCNAME {
			target := key(z.CNAME)
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
	s.mu.Unlock()
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
	s.mu.Lock()
	s.log = append(s.log, fq)
	s.mu.Unlock()
	w.WriteMsg(m)
}

// A returns an A record (the owner name is set by the zone).
func A(ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA}, A: net.ParseIP(ip).To4()}
}

// AAAA returns an AAAA record.
func AAAA(ip string) dns.RR {
	return &dns.AAAA{Hdr: dns.RR_Header{Rrtype: dns.TypeAAAA}, AAAA: net.ParseIP(ip)}
}

// MX returns an MX record; host "." is a null MX (RFC 7505).
func MX(pref uint16, host string) dns.RR {
	return &dns.MX{Hdr: dns.RR_Header{Rrtype: dns.TypeMX}, Preference: pref, Mx: dns.Fqdn(host)}
}

// TXT returns a TXT record of the given strings.
func TXT(txt ...string) dns.RR {
	return &dns.TXT{Hdr: dns.RR_Header{Rrtype: dns.TypeTXT}, Txt: txt}
}

// TLSA returns a TLSA record (RFC 6698 §2.1).
func TLSA(usage, selector, matchingType uint8, data []byte) dns.RR {
	return &dns.TLSA{Hdr: dns.RR_Header{Rrtype: dns.TypeTLSA}, Usage: usage, Selector: selector,
		MatchingType: matchingType, Certificate: hex.EncodeToString(data)}
}
