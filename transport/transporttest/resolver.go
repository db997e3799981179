package transporttest

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
)

// Zone is what a Resolver knows about one owner name. The zero value is a
// name that exists with no records (NODATA for every type), unsigned.
type Zone struct {
	// MX are the name's mail exchangers (RFC 5321 §5.1); an MX with Host
	// "." is a null MX (RFC 7505).
	MX []net.MX
	// Addrs are the name's addresses, served as A records for IPv4 and AAAA
	// records for IPv6 (RFC 3596), in text form: "192.0.2.1", "2001:db8::1".
	Addrs []string
	// TXT are the name's TXT records, one string per record, such as an
	// MTA-STS record under "_mta-sts.<domain>" (RFC 8461 §3.1) or a TLS-RPT
	// record under "_smtp._tls.<domain>" (RFC 8460 §3). A string longer than
	// 255 bytes is split into several character-strings (RFC 1035 §3.3.14).
	TXT []string
	// TLSA are the name's TLSA records, under "_25._tcp.<mx host>" for
	// SMTP (RFC 7672 §2.2.3); see TLSAFor.
	TLSA []policy.TLSA
	// CNAME makes the name an alias of another, followed as a recursive
	// resolver does (RFC 1034 §3.6.2).
	CNAME string
	// Secure says the answers about this name were validated by DNSSEC:
	// they carry the AD bit (RFC 4035 §3.2.3), which DANE (RFC 7672 §2.2)
	// and REQUIRETLS's authenticated MX set (RFC 8689 §4.2.1) rely on. An
	// answer through a CNAME chain is secure only if every name in it is.
	Secure bool
	// ServFail makes every query for the name fail with SERVFAIL, as a
	// validating resolver answers for bogus DNSSEC data (RFC 4033 §5).
	ServFail bool
}

// TLSAFor returns the DANE-EE record of cert's public key, "3 1 1" (usage
// DANE-EE, selector SubjectPublicKeyInfo, SHA2-256), the form RFC 7671 §5.1
// recommends for SMTP servers.
func TLSAFor(cert *x509.Certificate) policy.TLSA {
	data, err := dane.Association(cert, dane.SelectorSPKI, dane.MatchSHA256)
	if err != nil { // only for an unknown selector or matching type
		panic(err)
	}
	return policy.TLSA{Usage: dane.UsageDANEEE, Selector: dane.SelectorSPKI, MatchingType: dane.MatchSHA256, Data: data}
}

// Query is one DNS query a Resolver answered.
type Query struct {
	// Name is the queried name, fully qualified ("mx.example.test.").
	Name string
	// Type is the query type: "MX", "A", "AAAA", "TXT", "TLSA", ...
	Type string
}

// Resolver is a fake recursive DNS resolver: a table of Zones served over
// UDP and TCP on 127.0.0.1, which never forwards a query. Names it does
// not know do not exist (NXDOMAIN, unsigned).
//
// It is the DNS of every lookup a delivery makes, with no further set-up:
//   - as a transport.Resolver (MX and addresses), a policy.Resolver, an
//     mtasts.TXTResolver and a tlsrpt.TXTResolver, through its Lookup
//     methods;
//   - as the DNSSEC-aware resolver of DANE and REQUIRETLS through DNSSEC,
//     for transport.Connector.DNS or dane.Policy.Resolver; it is on
//     loopback, so its AD bits are believed (dane.TrustLoopback).
//
// Its methods are safe for concurrent use; Set may be called while lookups
// run.
type Resolver struct {
	// Addr is "127.0.0.1:port", for UDP and TCP alike.
	Addr string

	srv *fakedns.Server
	std *net.Resolver
}

var (
	_ transport.Resolver = (*Resolver)(nil)
	_ policy.Resolver    = (*Resolver)(nil)
	_ mtasts.TXTResolver = (*Resolver)(nil)
	_ tlsrpt.TXTResolver = (*Resolver)(nil)
)

// NewResolver starts a resolver answering from zones, keyed by owner name
// (with or without the final dot, in any case). It fails tb if it cannot
// listen and is closed when tb's test ends.
func NewResolver(tb testing.TB, zones map[string]Zone) *Resolver {
	tb.Helper()
	r, err := StartResolver(zones)
	if err != nil {
		tb.Fatalf("transporttest: %v", err)
	}
	tb.Cleanup(r.Close)
	return r
}

// StartResolver is NewResolver for use outside tests: the caller must
// Close the resolver.
func StartResolver(zones map[string]Zone) (*Resolver, error) {
	fz := make(map[string]fakedns.Zone, len(zones))
	for name, z := range zones {
		f, err := z.fake()
		if err != nil {
			return nil, fmt.Errorf("transporttest: zone %s: %w", name, err)
		}
		fz[name] = f
	}
	srv, err := fakedns.Listen(fz)
	if err != nil {
		return nil, fmt.Errorf("transporttest: %w", err)
	}
	return &Resolver{Addr: srv.Addr, srv: srv, std: srv.Resolver()}, nil
}

// Close stops the resolver. It is safe to call more than once.
func (r *Resolver) Close() { r.srv.Close() }

// Set adds or replaces the zone of name. It fails only for an address in
// z.Addrs that does not parse.
func (r *Resolver) Set(name string, z Zone) error {
	f, err := z.fake()
	if err != nil {
		return fmt.Errorf("transporttest: zone %s: %w", name, err)
	}
	r.srv.Set(name, f)
	return nil
}

func (z Zone) fake() (fakedns.Zone, error) {
	f := fakedns.Zone{AD: z.Secure, ServFail: z.ServFail, CNAME: z.CNAME}
	for _, mx := range z.MX {
		f.RRs = append(f.RRs, fakedns.MX(mx.Pref, mx.Host))
	}
	for _, a := range z.Addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return f, err
		}
		if ip.Is4() || ip.Is4In6() {
			f.RRs = append(f.RRs, fakedns.A(ip.Unmap().String()))
		} else {
			f.RRs = append(f.RRs, fakedns.AAAA(ip.String()))
		}
	}
	for _, t := range z.TXT {
		var parts []string
		for len(t) > 255 {
			parts, t = append(parts, t[:255]), t[255:]
		}
		f.RRs = append(f.RRs, fakedns.TXT(append(parts, t)...))
	}
	for _, t := range z.TLSA {
		f.RRs = append(f.RRs, fakedns.TLSA(t.Usage, t.Selector, t.MatchingType, t.Data))
	}
	return f, nil
}

// Queries returns the queries answered so far, in order.
func (r *Resolver) Queries() []Query {
	var qs []Query
	for _, q := range r.srv.Queries() {
		qs = append(qs, Query{Name: q.Name, Type: dns.TypeToString[q.Type]})
	}
	return qs
}

// DNSSEC returns a DNSSEC-aware resolver querying r, for
// transport.Connector.DNS (every lookup of a delivery, DANE's included) or
// dane.Policy.Resolver. Zones marked Secure answer with the AD bit, which
// it believes because r is on loopback (dane.TrustLoopback).
func (r *Resolver) DNSSEC() *dane.Resolver { return &dane.Resolver{Addr: r.Addr} }

// rooted makes name absolute, so that no search domain of the host's
// resolv.conf is tried (RFC 1034 §3.1).
func rooted(name string) string { return dns.Fqdn(name) }

// LookupMX returns name's MX records sorted by preference, as
// net.Resolver.LookupMX does; a name without any is a *net.DNSError with
// IsNotFound set.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.std.LookupMX(ctx, rooted(name))
}

// LookupIPAddr returns host's A and AAAA records, as
// net.Resolver.LookupIPAddr does.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: net.IP(ip.AsSlice()), Zone: ip.Zone()}}, nil
	}
	return r.std.LookupIPAddr(ctx, rooted(host))
}

// LookupTXT returns name's TXT records, each one's strings joined, as
// net.Resolver.LookupTXT does.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.std.LookupTXT(ctx, rooted(name))
}
