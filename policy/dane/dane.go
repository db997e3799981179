package dane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// ErrDANERequired is set as Host.Err at level dane-only (Policy.Mandatory)
// when a host has no usable DNSSEC-authenticated TLSA records, or its MX or
// address records were not authenticated: Postfix's dane-only never falls
// back to "may" or "encrypt". The message must be deferred. TLS-RPT
// "dane-required" (RFC 8460 §4.3).
var ErrDANERequired = errors.New("dane: dane-only: no usable DNSSEC-authenticated TLSA records")

// Policy discovers the DANE requirements of a destination (RFC 7672 §2) with
// a DNSSEC-aware Resolver. It implements policy.Policy for composition with
// other sources and offers the per-MX-host detail a Connector needs.
//
// DANE is a property of each MX host, not of the domain: every host has its
// own TLSA RRset, and the certificate of one host must never be checked
// against another host's records. The intended use by a Connector is:
//
//  1. dest, err := p.LookupMX(ctx, domain). An error means the MX RRset could
//     not be obtained (SERVFAIL, timeout): defer the message.
//  2. For each dest.Hosts[i] in order: if h.Err != nil the host is unusable
//     (lookup failure, RFC 7672 §2.2; or dane-only without records): skip it
//     and remember the error for the DSN and TLS-RPT. Otherwise dial one of
//     h.Addrs (the addresses that were validated) and act on h.Level:
//     DANE/DANEOnly: STARTTLS is mandatory and h.ClientConfig verifies the
//     certificate against h.TLSA; Encrypt: STARTTLS mandatory, certificate
//     not checked (all TLSA records unusable, RFC 7672 §2.2); May:
//     opportunistic TLS, plaintext allowed if STARTTLS is not offered.
//  3. When no host could be used, defer the message.
//
// A Connector that resolves MX hosts itself (or has a route to a fixed host,
// where the MX lookup is replaced by configuration) calls LookupHost for
// each host instead.
//
// The zero Policy is opportunistic DANE ("dane") through a resolver on
// 127.0.0.1:53. A Policy is safe for concurrent use; do not modify it after
// first use.
type Policy struct {
	// Resolver is the DNSSEC-aware resolver. Nil means the resolver of the
	// delivery in progress when a Connector passed one in the context
	// (transport.Connector.DNS, see policy.WithResolver) and it is a
	// *Resolver, else the zero Resolver (DefaultResolverAddr, trusted
	// because it is loopback).
	Resolver *Resolver
	// Port is the SMTP port whose TLSA records are looked up
	// ("_25._tcp.<host>"). Zero means 25.
	Port uint16
	// Mandatory selects Postfix's "dane-only": hosts without usable
	// authenticated TLSA records are not delivered to (Host.Err is
	// ErrDANERequired). False is "dane": such hosts fall back to "may" (no
	// records) or "encrypt" (only unusable records).
	Mandatory bool
	// Logger receives one line per destination and per host decision. Nil
	// discards.
	Logger *slog.Logger
}

var _ policy.Policy = (*Policy)(nil)

// resolver is Resolver, else the delivery's resolver in ctx when it is a
// *Resolver (policy.WithResolver), else the zero Resolver.
func (p *Policy) resolver(ctx context.Context) *Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	if r, ok := policy.ResolverFrom(ctx).(*Resolver); ok && r != nil {
		return r
	}
	return &Resolver{}
}

func (p *Policy) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

func (p *Policy) level() policy.Level {
	if p.Mandatory {
		return policy.DANEOnly
	}
	return policy.DANE
}

// Host is the DANE decision for one MX host (RFC 7672 §2.2.2, §3).
type Host struct {
	// Name is the MX host name, lower case, no trailing dot.
	Name string
	// Pref is the MX preference (0 for an implicit MX or LookupHost).
	Pref uint16
	// Addrs are the host's IPv4 and IPv6 addresses. Empty when Err is a
	// lookup failure, or when the host has no address records (it is then
	// unusable, whatever its level).
	Addrs []netip.Addr
	// AddrsAuthentic is true when the address records (and any CNAME
	// leading to them) were DNSSEC-validated.
	AddrsAuthentic bool
	// TLSABase is the TLSA base domain (RFC 7672 §2.2.2): the CNAME-expanded
	// host name when the expansion was secure and TLSA records exist there,
	// else Name. It is the name sent in SNI (RFC 7672 §8.1).
	TLSABase string
	// TLSA holds the usable DNSSEC-authenticated records at TLSABase (see
	// Usable). Non-empty exactly when Level is DANE or DANEOnly.
	TLSA []policy.TLSA
	// Unusable counts authenticated records that are not usable (PKIX-TA,
	// PKIX-EE, unknown parameters, bad digest length or malformed data).
	Unusable int
	// Names are the reference identifiers for DANE-TA(2) name checks (RFC
	// 7672 §3.2.2): the CNAME-expanded host name when secure, the MX host
	// name, and, when the MX RRset was secure and explicit, the next-hop
	// domain and its CNAME expansion.
	Names []string
	// Level is the effective level for this host: DANE or DANEOnly (verify
	// against TLSA), Encrypt (TLS mandatory, unauthenticated: only unusable
	// records, RFC 7672 §2.2), May (no authenticated TLSA: opportunistic).
	Level policy.Level
	// Reason explains Level in a few words, for logs and DSNs.
	Reason string
	// Err, when non-nil, means the host must not be delivered to: an
	// address or TLSA lookup failed (wraps ErrLookupFailed, RFC 7672 §2.2)
	// or the policy is dane-only and the host has no usable records (wraps
	// ErrDANERequired).
	Err error
}

// ServerName returns the name to send in SNI: the TLSA base domain (RFC 7672
// §8.1).
func (h *Host) ServerName() string {
	if h.TLSABase != "" {
		return h.TLSABase
	}
	return h.Name
}

// State is h as policy.Plan sees it (RFC 7672 §2.2): usable records,
// only unusable ones, none, a failed lookup, or none usable under a
// dane-only Policy.
func (h *Host) State() policy.DANEState {
	switch {
	case h.Err != nil && errors.Is(h.Err, ErrLookupFailed):
		return policy.DANELookupFailed
	case h.Err != nil:
		return policy.DANEMissing
	case len(h.TLSA) > 0:
		return policy.DANEUsable
	case h.Level == policy.Encrypt:
		return policy.DANEUnusable
	}
	return policy.DANENoRecords
}

// RequiresTLS reports whether delivery to h must not proceed without TLS:
// true at DANE and DANEOnly with usable records and at Encrypt (RFC 7672
// §2.2), false at May. (policy.Level.RequiresTLS cannot say this for DANE,
// which depends on the records found.)
func (h *Host) RequiresTLS() bool {
	switch h.Level {
	case policy.DANE, policy.DANEOnly:
		return len(h.TLSA) > 0 || h.Err != nil
	}
	return h.Level.RequiresTLS()
}

// Verify checks a connection to h against h.TLSA and h.Names (see Verify).
// It fails with ErrNoUsableRecords when h has no usable records.
func (h *Host) Verify(cs tls.ConnectionState, now time.Time) error {
	return Verify(cs, h.TLSA, h.Names, now)
}

// ClientConfig returns a copy of base (nil means an empty config) prepared
// for a STARTTLS handshake with h: ServerName is h.ServerName() (RFC 7672
// §8.1) and, at DANE and DANEOnly, VerifyConnection checks the certificate
// against h.TLSA with the time now returns (time.Now when nil). At every
// level InsecureSkipVerify is set, because DANE replaces WebPKI
// verification (RFC 7672 §3.1) and at Encrypt and May no verification is
// done at all (RFC 7672 §2.2; RFC 7435). A VerifyConnection already in base
// is called after the DANE check succeeds. It returns h.Err when set.
func (h *Host) ClientConfig(base *tls.Config, now func() time.Time) (*tls.Config, error) {
	if h.Err != nil {
		return nil, h.Err
	}
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	c.ServerName = h.ServerName()
	c.InsecureSkipVerify = true
	if h.Level == policy.DANE || h.Level == policy.DANEOnly {
		if len(h.TLSA) == 0 {
			return nil, fmt.Errorf("%w for %s", ErrNoUsableRecords, h.Name)
		}
		verify := VerifyConnection(h.TLSA, h.Names, now)
		next := c.VerifyConnection
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verify(cs); err != nil {
				return err
			}
			if next != nil {
				return next(cs)
			}
			return nil
		}
	}
	return c, nil
}

// HostError is the failure of the lookups of one MX host (RFC 7672 §2.2):
// Policy.Lookup returns it when the lookups of every MX host failed, so
// that the caller can name the host in its logs and TLS-RPT results
// ("receiving-mx-hostname", RFC 8460 §4.3). It wraps the lookup error
// (ErrLookupFailed).
type HostError struct {
	Host string // the MX host name, lower case, no trailing dot
	Err  error
}

// Error names the host and the failure.
func (e *HostError) Error() string { return "dane: MX host " + e.Host + ": " + e.Err.Error() }

// Unwrap returns the lookup error.
func (e *HostError) Unwrap() error { return e.Err }

// Destination is the DANE view of a next-hop domain: its MX hosts in
// preference order, each with its own decision.
type Destination struct {
	// Domain is the next-hop domain, lower case, no trailing dot.
	Domain string
	// MXAuthentic is true when the MX RRset (or the proof there is none) was
	// DNSSEC-validated: the precondition for DANE (RFC 7672 §2.2.1) and for
	// REQUIRETLS (RFC 8689 §4.2).
	MXAuthentic bool
	// Implicit: the domain has no MX records; Hosts is the domain itself.
	Implicit bool
	// Null: null MX (RFC 7505), the domain accepts no mail. No hosts.
	Null bool
	// NXDomain: the domain does not exist. No hosts.
	NXDomain bool
	// Hosts are the MX hosts with their DANE decisions.
	Hosts []Host
}

// LookupMX resolves domain's MX hosts and, for each, its addresses and TLSA
// records (RFC 7672 §2.2). TLSA records are looked up only when the MX
// RRset is authentic and the host's address records are too (RFC 7672
// §2.2.1-2.2.2); otherwise the host gets the fallback level (May, or Err
// ErrDANERequired when Mandatory). RFC 7672 §2.2.1 permits DANE for MX hosts
// of an insecure MX RRset when their own zones are signed; this
// implementation does not do that.
//
// The error is non-nil only when the MX lookup itself failed (it wraps
// ErrLookupFailed): defer. Failures of a single host are in Host.Err.
func (p *Policy) LookupMX(ctx context.Context, domain string) (*Destination, error) {
	start := time.Now()
	mx, err := p.resolver(ctx).LookupMX(ctx, domain)
	if err != nil {
		p.logger().Info("dane: mx lookup failed", "domain", domain, "err", err)
		return nil, err
	}
	d := &Destination{Domain: mx.Domain, MXAuthentic: mx.Authentic, Implicit: mx.Implicit, Null: mx.Null, NXDomain: mx.NXDomain}
	var nextHop []string
	if mx.Authentic && !mx.Implicit {
		// RFC 7672 §3.2.2: with a secure MX RRset the next-hop domain (and
		// its secure CNAME expansion) is also a reference identifier.
		nextHop = []string{mx.Domain, mx.Canonical}
	}
	for _, m := range mx.Hosts {
		h := p.lookupHost(ctx, m.Host, mx.Authentic, nextHop)
		h.Pref = m.Pref
		d.Hosts = append(d.Hosts, h)
	}
	p.logger().Info("dane: destination", "domain", d.Domain, "mx_authentic", d.MXAuthentic,
		"hosts", len(d.Hosts), "policy", p.level().String(), "duration", time.Since(start))
	return d, nil
}

// LookupHost returns the DANE decision for one SMTP server host name, as
// when the next hop is a configured host rather than the result of an MX
// lookup (the host name then comes from local configuration, which is
// trusted like a secure MX RRset; RFC 7672 §2.2.1-2.2.2). Lookup failures
// are in Host.Err, never a separate error.
func (p *Policy) LookupHost(ctx context.Context, host string) Host {
	return p.lookupHost(ctx, strings.ToLower(trimDot(host)), true, nil)
}

func (p *Policy) lookupHost(ctx context.Context, name string, mxSecure bool, nextHop []string) (h Host) {
	h = Host{Name: name, TLSABase: name}
	defer func() {
		p.logger().Info("dane: host", "mx", h.Name, "level", h.Level.String(), "tlsa", len(h.TLSA),
			"unusable", h.Unusable, "reason", h.Reason, "err", h.Err)
	}()
	r := p.resolver(ctx)
	addrs, err := r.LookupAddrs(ctx, name)
	if err != nil {
		h.Level, h.Reason, h.Err = p.level(), "address lookup failed", err
		return h
	}
	h.Addrs, h.AddrsAuthentic = addrs.Addrs, addrs.Authentic
	h.Names = appendName(nil, name)
	switch {
	case !mxSecure:
		return p.fallback(h, "MX RRset not DNSSEC-authenticated", false)
	case !addrs.Authentic:
		return p.fallback(h, "address records not DNSSEC-authenticated", false)
	}
	bases := []string{name}
	if addrs.Canonical != "" && addrs.Canonical != name {
		// RFC 7672 §2.2.2: with a secure CNAME chain the expanded name is
		// tried first, then the original name.
		bases = []string{addrs.Canonical, name}
		h.Names = appendName([]string{addrs.Canonical}, name)
	}
	for _, n := range nextHop {
		h.Names = appendName(h.Names, n)
	}
	for _, base := range bases {
		t, err := r.LookupTLSA(ctx, base, p.Port)
		if err != nil {
			// RFC 7672 §2.2: a failed TLSA lookup makes the host unusable.
			h.Level, h.Reason, h.Err = p.level(), "TLSA lookup failed", err
			return h
		}
		if !t.Authentic || len(t.Records)+t.Malformed == 0 {
			continue
		}
		h.TLSABase = base
		usable, unusable := Split(t.Records)
		h.Unusable = len(unusable) + t.Malformed
		if len(usable) == 0 {
			return p.fallback(h, fmt.Sprintf("%s: all %d TLSA records unusable", t.Name, h.Unusable), true)
		}
		h.TLSA, h.Level = usable, p.level()
		h.Reason = fmt.Sprintf("%s: %d usable TLSA records", t.Name, len(usable))
		return h
	}
	return p.fallback(h, "no DNSSEC-authenticated TLSA records", false)
}

// fallback applies Postfix's rules when a host has no usable records:
// "dane" becomes "encrypt" when unusable records exist (RFC 7672 §2.2) and
// "may" otherwise; "dane-only" fails.
func (p *Policy) fallback(h Host, reason string, unusableOnly bool) Host {
	h.TLSA = nil
	switch {
	case p.Mandatory:
		h.Level, h.Reason = policy.DANEOnly, reason
		h.Err = fmt.Errorf("%w: %s: %s", ErrDANERequired, h.Name, reason)
	case unusableOnly:
		h.Level, h.Reason = policy.Encrypt, reason+": TLS mandatory without authentication"
	default:
		h.Level, h.Reason = policy.May, reason
	}
	return h
}

func appendName(l []string, n string) []string {
	n = strings.ToLower(trimDot(n))
	if n == "" {
		return l
	}
	for _, x := range l {
		if x == n {
			return l
		}
	}
	return append(l, n)
}

// Lookup implements policy.Policy: it summarises LookupMX in one
// Requirement with Source policy.SourceDANE, for composition with MTA-STS
// and static tables (DANE takes precedence when authenticated TLSA exist).
//
//   - MX lookup failure: the error (defer).
//   - Every host failed its lookups: a *HostError naming the first host,
//     wrapping its error (defer).
//   - Some host has usable records: Level DANE (DANEOnly when Mandatory),
//     TLSA = the usable records of the most preferred such host.
//   - Otherwise, "dane": Encrypt when some host has only unusable records,
//     else May; "dane-only": DANEOnly with no TLSA, which a Connector must
//     treat as a failure.
//
// MXAuthenticated is the MX RRset's authenticity. Because records differ per
// host, a Connector must verify each host against that host's own records
// from LookupMX or LookupHost, not against Requirement.TLSA; the latter is
// for explanation and composition. When the Resolver is not trusted
// (Resolver.Trusted), no query is sent and DANE does not apply: May, or a
// DANEOnly failure.
func (p *Policy) Lookup(ctx context.Context, domain string) (policy.Requirement, error) {
	req := policy.Requirement{Domain: strings.ToLower(trimDot(domain)), Source: policy.SourceDANE}
	if res := p.resolver(ctx); !res.Trusted() {
		p.logger().Warn("dane: resolver not trusted for DNSSEC, DANE does not apply", "resolver", res.addr(),
			"trust", res.Trust.String(), "domain", req.Domain)
		req.Level, req.Reason = p.noDANE(), fmt.Sprintf("resolver %s not trusted for DNSSEC (AD ignored)", res.addr())
		return req, nil
	}
	d, err := p.LookupMX(ctx, domain)
	if err != nil {
		return policy.Requirement{}, err
	}
	req.MXAuthenticated = d.MXAuthentic
	var firstErr error
	var firstHost string
	failed, unusableOnly := 0, false
	for i := range d.Hosts {
		h := &d.Hosts[i]
		switch {
		case h.Err != nil && errors.Is(h.Err, ErrLookupFailed):
			failed++
			if firstErr == nil {
				firstErr, firstHost = h.Err, h.Name
			}
		case len(h.TLSA) > 0:
			req.Level, req.TLSA = p.level(), append([]policy.TLSA(nil), h.TLSA...)
			req.Reason = fmt.Sprintf("MX %s: %s", h.Name, h.Reason)
			return req, nil
		case h.Unusable > 0:
			unusableOnly = true
		}
	}
	if len(d.Hosts) > 0 && failed == len(d.Hosts) {
		return policy.Requirement{}, &HostError{Host: firstHost, Err: firstErr}
	}
	switch {
	case !d.MXAuthentic:
		req.Reason = "MX RRset not DNSSEC-authenticated"
	case d.Null || d.NXDomain:
		req.Reason = "no mail exchanger (null MX or no such domain)"
	case unusableOnly:
		req.Reason = "only unusable TLSA records"
	default:
		req.Reason = "no usable DNSSEC-authenticated TLSA records"
	}
	if failed > 0 {
		req.Reason += fmt.Sprintf(" (%d of %d MX hosts failed lookup: %v)", failed, len(d.Hosts), firstErr)
	}
	req.Level = p.noDANE()
	if unusableOnly && !p.Mandatory {
		req.Level = policy.Encrypt
	}
	return req, nil
}

func (p *Policy) noDANE() policy.Level {
	if p.Mandatory {
		return policy.DANEOnly
	}
	return policy.May
}
