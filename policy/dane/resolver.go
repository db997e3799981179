package dane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/policy"
)

// Trust says whether the AD (Authenticated Data) bit in a resolver's answers
// is believed. The zero value, TrustLoopback, is the strict default.
//
// This package does not validate DNSSEC signatures itself. It relies on a
// validating recursive resolver and its AD bit, which is only as good as the
// path the answer travels: an attacker between us and the resolver can set
// the bit on forged answers. RFC 6698 §4.1 and RFC 7672 §1.3 therefore
// require that the channel to the validating resolver be secure, and RFC 7672
// §2.1 that DNSSEC validation be trustworthy. A resolver on the same host
// (loopback) satisfies this; a resolver across a network does only if the
// operator secures the path (IPsec, a dedicated link, TSIG or a DNS-over-TLS
// forwarder on loopback) and says so with TrustAlways.
type Trust int

// Trust values.
const (
	// TrustLoopback: believe AD only when Resolver.Addr is a loopback IP
	// address literal (127.0.0.0/8, ::1). Host names, even "localhost", are
	// not trusted because their resolution is itself unauthenticated.
	TrustLoopback Trust = iota
	// TrustAlways: believe AD from Resolver.Addr whatever it is. Use only when
	// the path to that resolver is secured; see Trust.
	TrustAlways
	// TrustNever: ignore AD; every answer is insecure and DANE never applies.
	TrustNever
)

// String returns "loopback", "always" or "never".
func (t Trust) String() string {
	switch t {
	case TrustLoopback:
		return "loopback"
	case TrustAlways:
		return "always"
	case TrustNever:
		return "never"
	}
	return fmt.Sprintf("trust(%d)", int(t))
}

// DefaultResolverAddr is the resolver a Resolver with an empty Addr queries:
// a validating resolver (unbound, knot-resolver, systemd-resolved with DNSSEC
// enabled) on this host.
const DefaultResolverAddr = "127.0.0.1:53"

// ErrLookupFailed is wrapped by every lookup error of this package: the
// resolver answered SERVFAIL (which a validating resolver returns for bogus
// DNSSEC data), refused, or did not answer in time, or the answer was
// malformed. RFC 7672 §2.1.1 and §2.2: such a result is neither "no records"
// nor "insecure"; the MX host it concerns must be treated as unreachable and
// the message deferred, never sent with weaker protection.
var ErrLookupFailed = errors.New("dane: DNS lookup failed")

// LookupError describes a failed DNS query. It wraps ErrLookupFailed and,
// for network failures, the underlying error.
type LookupError struct {
	Name  string // queried name, fully qualified
	Type  string // "MX", "A", "AAAA", "TLSA"
	Rcode int    // DNS response code, or -1 when there was no response
	Err   error  // cause for network failures, else nil
}

// Error describes the query and why it failed.
func (e *LookupError) Error() string {
	if e.Rcode >= 0 {
		return fmt.Sprintf("dane: DNS lookup failed: %s %s: %s", e.Name, e.Type, dns.RcodeToString[e.Rcode])
	}
	return fmt.Sprintf("dane: DNS lookup failed: %s %s: %v", e.Name, e.Type, e.Err)
}

// Unwrap returns ErrLookupFailed and the cause.
func (e *LookupError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrLookupFailed, e.Err}
	}
	return []error{ErrLookupFailed}
}

// Resolver is a DNSSEC-aware stub resolver for the lookups DANE needs. It
// sends each query with the DO bit and the AD bit set (RFC 4035 §3.2.1, RFC
// 6840 §5.7) to one validating recursive resolver over UDP, retries over TCP
// when the answer is truncated (RFC 7766 §5), and reports whether each answer
// is authentic: AD set by a resolver it trusts (see Trust).
//
// The zero value queries DefaultResolverAddr and trusts it, since it is
// loopback. A Resolver is safe for concurrent use; do not modify it after
// first use.
type Resolver struct {
	// Addr is the resolver's "host:port" (for IPv6 "[::1]:53"). Empty means
	// DefaultResolverAddr.
	Addr string
	// Trust decides whether AD bits from Addr are believed. The zero value
	// trusts only loopback addresses.
	Trust Trust
	// Timeout bounds each query (UDP, and the TCP retry separately). Zero
	// means 5 seconds. A deadline on the context is honoured too.
	Timeout time.Duration
	// Exchange, when non-nil, replaces the network exchange (network is
	// "udp" or "tcp"); a test seam. Nil uses miekg/dns.
	Exchange func(ctx context.Context, network string, m *dns.Msg, addr string) (*dns.Msg, error)
	// Logger receives one debug line per query. Nil discards.
	Logger *slog.Logger
}

func (r *Resolver) addr() string {
	if r == nil || r.Addr == "" {
		return DefaultResolverAddr
	}
	return r.Addr
}

// Trusted reports whether AD bits from the resolver are believed, without
// sending anything: Trust is TrustAlways, or TrustLoopback and Addr is a
// loopback IP literal.
func (r *Resolver) Trusted() bool {
	var t Trust
	if r != nil {
		t = r.Trust
	}
	switch t {
	case TrustAlways:
		return true
	case TrustLoopback:
		host, _, err := net.SplitHostPort(r.addr())
		if err != nil {
			return false
		}
		ip, err := netip.ParseAddr(host)
		return err == nil && ip.IsLoopback()
	}
	return false
}

func (r *Resolver) logger() *slog.Logger {
	if r == nil || r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Answer is the result of one query. NXDOMAIN and NODATA are answers, not
// errors: Records is empty and, when Authentic, the non-existence was proven
// by DNSSEC (RFC 4035 §5.4).
type Answer struct {
	// Name is the queried name, fully qualified and lower case.
	Name string
	// Canonical is the name the records belong to after following the CNAME
	// chain in the answer; equal to Name when there was none.
	Canonical string
	// Records are the records of the queried type owned by Canonical.
	Records []dns.RR
	// NXDomain is true when the name does not exist (RCODE 3).
	NXDomain bool
	// Authentic is true when a trusted resolver set AD: every RRset in the
	// answer, including each CNAME followed, or the proof of non-existence,
	// was DNSSEC-validated as secure.
	Authentic bool
}

const maxCNAMEs = 8

// Query asks the resolver for name's records of type qtype. It returns an
// error wrapping ErrLookupFailed for SERVFAIL, other error RCODEs, network
// failures and answers that do not match the question; NXDOMAIN and NODATA
// are returned as an Answer without records.
//
// Under a context carrying a Memo (WithMemo), a query already answered
// under that Memo is not sent again; see Memo.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	if m := memoFrom(ctx); m != nil {
		k := memoKey{addr: r.addr(), trusted: r.Trusted(), name: strings.ToLower(dns.Fqdn(name)), qtype: qtype}
		return m.do(ctx, k, func() (*Answer, error) { return r.query(ctx, name, qtype) })
	}
	return r.query(ctx, name, qtype)
}

func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	fqdn := strings.ToLower(dns.Fqdn(name))
	tname := dns.TypeToString[qtype]
	fail := func(rcode int, err error) (*Answer, error) {
		return nil, &LookupError{Name: fqdn, Type: tname, Rcode: rcode, Err: err}
	}
	if _, ok := dns.IsDomainName(fqdn); !ok {
		return fail(-1, errors.New("invalid domain name"))
	}
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true // RFC 6840 §5.7: ask for AD
	m.SetEdns0(1232, true)     // DO bit (RFC 3225); 1232 per DNS flag day 2020
	start := time.Now()
	resp, err := r.exchange(ctx, "udp", m)
	if err == nil && resp.Truncated {
		resp, err = r.exchange(ctx, "tcp", m)
	}
	if err != nil {
		return fail(-1, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, fqdn) || resp.Question[0].Qtype != qtype {
		return fail(-1, errors.New("response does not match the question"))
	}
	a := &Answer{Name: fqdn, Canonical: fqdn, Authentic: resp.AuthenticatedData && r.Trusted()}
	r.logger().Debug("dane: dns query", "name", fqdn, "type", tname, "rcode", dns.RcodeToString[resp.Rcode],
		"ad", resp.AuthenticatedData, "authentic", a.Authentic, "resolver", r.addr(), "duration", time.Since(start))
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		a.NXDomain = true
	default:
		return fail(resp.Rcode, nil)
	}
	// Follow the CNAME chain in the answer section (RFC 1034 §3.6.2).
	for range maxCNAMEs {
		var next string
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, a.Canonical) {
				next = strings.ToLower(c.Target)
			}
		}
		if next == "" || qtype == dns.TypeCNAME {
			break
		}
		a.Canonical = next
	}
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, a.Canonical) {
			a.Records = append(a.Records, rr)
		}
	}
	return a, nil
}

func (r *Resolver) exchange(ctx context.Context, network string, m *dns.Msg) (*dns.Msg, error) {
	timeout := 5 * time.Second
	if r != nil && r.Timeout > 0 {
		timeout = r.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if r != nil && r.Exchange != nil {
		return r.Exchange(ctx, network, m, r.addr())
	}
	c := &dns.Client{Net: network, Timeout: timeout, UDPSize: 1232}
	conn, err := c.DialContext(ctx, r.addr())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// miekg/dns honours only the context's deadline; make cancellation
	// interrupt the read too.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if cerr := ctx.Err(); err != nil && cerr != nil {
		return nil, fmt.Errorf("%w (%v)", cerr, err)
	}
	return resp, err
}

// MX is one mail exchanger.
type MX struct {
	Host string // lower case, no trailing dot
	Pref uint16
}

// MXResult is the answer to an MX lookup (RFC 5321 §5.1).
type MXResult struct {
	// Domain is the queried domain, lower case, no trailing dot.
	Domain string
	// Canonical is Domain after CNAME expansion (RFC 7672 §2.2.2).
	Canonical string
	// Hosts are the exchangers sorted by preference (stable for equal
	// preferences). For a domain without MX records it holds the domain
	// itself with Implicit set (RFC 5321 §5.1).
	Hosts []MX
	// Implicit is true when the domain has no MX records and its own name is
	// the mail exchanger.
	Implicit bool
	// Null is true for a null MX (a single "0 ." record, RFC 7505): the
	// domain accepts no mail. Hosts is then empty.
	Null bool
	// NXDomain is true when the domain does not exist. Hosts is then empty.
	NXDomain bool
	// Authentic is true when the MX RRset, or the proof that there is none,
	// was DNSSEC-validated by a trusted resolver.
	Authentic bool
}

// LookupMX looks up domain's MX records, applying the implicit MX rule (RFC
// 5321 §5.1) and recognising a null MX (RFC 7505). A domain that does not
// exist is not an error: the result has NXDomain set and no hosts.
func (r *Resolver) LookupMX(ctx context.Context, domain string) (*MXResult, error) {
	a, err := r.Query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	res := &MXResult{Domain: trimDot(a.Name), Canonical: trimDot(a.Canonical), Authentic: a.Authentic}
	if a.NXDomain {
		res.NXDomain = true
		return res, nil
	}
	for _, rr := range a.Records {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		res.Hosts = append(res.Hosts, MX{Host: trimDot(strings.ToLower(mx.Mx)), Pref: mx.Preference})
	}
	if len(res.Hosts) == 1 && res.Hosts[0].Host == "" {
		res.Hosts, res.Null = nil, true
		return res, nil
	}
	if len(res.Hosts) == 0 {
		res.Hosts, res.Implicit = []MX{{Host: res.Canonical}}, true
		return res, nil
	}
	sortMX(res.Hosts)
	return res, nil
}

// sortMX orders h by preference, lowest first (RFC 5321 §5.1). The sort is
// stable: hosts of equal preference keep their order in the answer.
func sortMX(h []MX) {
	slices.SortStableFunc(h, func(a, b MX) int { return cmp.Compare(a.Pref, b.Pref) })
}

// AddrResult is the answer to an address lookup of a host.
type AddrResult struct {
	// Host is the queried name, lower case, no trailing dot.
	Host string
	// Canonical is Host after CNAME expansion; equal to Host when none.
	Canonical string
	// Addrs holds the IPv4 then the IPv6 addresses.
	Addrs []netip.Addr
	// Authentic is true when both the A and the AAAA answers (each CNAME
	// included) were DNSSEC-validated by a trusted resolver.
	Authentic bool
}

// LookupAddrs looks up host's A and AAAA records. A failure of either query
// fails the lookup (RFC 7672 §2.2.2: an MX host whose address lookup fails
// is unusable, its TLSA status cannot be known).
func (r *Resolver) LookupAddrs(ctx context.Context, host string) (*AddrResult, error) {
	res := &AddrResult{Host: trimDot(strings.ToLower(host)), Authentic: true}
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.Query(ctx, host, qt)
		if err != nil {
			return nil, err
		}
		res.Authentic = res.Authentic && a.Authentic
		if qt == dns.TypeA || res.Canonical == "" {
			res.Canonical = trimDot(a.Canonical)
		}
		for _, rr := range a.Records {
			var ip netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				ip, _ = netip.AddrFromSlice(v.A.To4())
			case *dns.AAAA:
				ip, _ = netip.AddrFromSlice(v.AAAA.To16())
			}
			if ip.IsValid() {
				res.Addrs = append(res.Addrs, ip)
			}
		}
	}
	return res, nil
}

// TLSAResult is the answer to a TLSA lookup.
type TLSAResult struct {
	// Name is the queried owner name, "_25._tcp.mx.example" (no trailing dot).
	Name string
	// Records are all the TLSA records found, usable or not; see Split.
	// Records whose data is not valid hex are dropped and counted in
	// Malformed.
	Records []policy.TLSA
	// Malformed counts records that could not be converted.
	Malformed int
	// Authentic is true when the TLSA RRset, or the proof that there is none,
	// was DNSSEC-validated by a trusted resolver. Records from an answer
	// that is not authentic must not be used (RFC 7672 §2.2).
	Authentic bool
}

// TLSAName returns the owner name of the TLSA records for a TCP service:
// "_25._tcp.mx.example" (RFC 6698 §3). Port 0 means 25.
func TLSAName(host string, port uint16) string {
	if port == 0 {
		port = 25
	}
	return fmt.Sprintf("_%d._tcp.%s", port, trimDot(strings.ToLower(host)))
}

// LookupTLSA looks up the TLSA records of host's TCP port (0 means 25): the
// RRset at TLSAName(host, port), following CNAMEs (RFC 7671 §7).
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port uint16) (*TLSAResult, error) {
	name := TLSAName(host, port)
	a, err := r.Query(ctx, name, dns.TypeTLSA)
	if err != nil {
		return nil, err
	}
	res := &TLSAResult{Name: name, Authentic: a.Authentic}
	for _, rr := range a.Records {
		rec, _ := rr.(*dns.TLSA)
		t, err := FromDNS(rec)
		if err != nil {
			res.Malformed++
			continue
		}
		res.Records = append(res.Records, t)
	}
	return res, nil
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }

// LookupTXT returns the TXT records of name, each record's strings joined,
// as net.Resolver.LookupTXT does, so that a Resolver can serve the lookups
// that need no DNSSEC (the MTA-STS record, RFC 8461 §3.1; the TLS-RPT
// record, RFC 8460 §3) from the same validating resolver: it satisfies
// policy.Resolver. A name without TXT records (NXDOMAIN or NODATA) is a
// *net.DNSError with IsNotFound set; a failed lookup is a *net.DNSError
// that unwraps to the *LookupError (and so to ErrLookupFailed).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	a, err := r.Query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, r.netError(name, err)
	}
	var out []string
	for _, rr := range a.Records {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	if len(out) == 0 {
		return nil, r.notFound(name)
	}
	return out, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host, as
// net.Resolver.LookupIPAddr does: an IP literal is returned as it is, and
// the addresses of whichever of the A and AAAA queries succeeded are
// returned, an error only when both failed. A host without addresses is a
// *net.DNSError with IsNotFound set. Whether the answers were authentic is
// not reported; LookupAddrs says so (DANE needs it, RFC 7672 §2.2.2).
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: net.IP(ip.AsSlice()), Zone: ip.Zone()}}, nil
	}
	var out []net.IPAddr
	var firstErr error
	failed := 0
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.Query(ctx, host, qt)
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, rr := range a.Records {
			switch v := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: v.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: v.AAAA})
			}
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case failed > 0:
		return nil, r.netError(host, firstErr)
	}
	return nil, r.notFound(host)
}

func (r *Resolver) notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, Server: r.addr(), IsNotFound: true}
}

func (r *Resolver) netError(name string, err error) error {
	var le *LookupError
	timeout := errors.As(err, &le) && le.Rcode < 0 && errors.Is(err, context.DeadlineExceeded)
	return &net.DNSError{Err: err.Error(), Name: name, Server: r.addr(), IsTimeout: timeout, IsTemporary: true, UnwrapErr: err}
}
