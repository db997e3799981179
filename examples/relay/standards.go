package main

import (
	"context"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
)

// publishedPolicies creates the parts the standards flags enable and returns
// the lookups of the policies destinations publish themselves:
//
//   - -resolver: the one resolver (r.dns) every lookup goes to: the
//     Connector's (Connector.DNS: MX, addresses, TLSA), the MTA-STS
//     client's (the TXT record and the policy host, also when refreshing
//     in the background) and the TLS-RPT reporter's;
//   - -mta-sts: an MTA-STS client (RFC 8461) with its cache under
//     -data/mta-sts, so that policies survive restarts;
//   - -dane-resolver: -resolver, plus a DANE policy (RFC 7672) through
//     that resolver, whose AD bit is believed only on loopback;
//   - -tlsrpt: the TLS-RPT result store (RFC 8460) under -data/tlsrpt.
//
// newOutboundPolicy composes the lookups with the static table and
// -default-tls in a policy.Standard; wireStandards hands the DANE policy
// and the TLS-RPT store to the Connector, which verifies each MX host
// against its own TLSA records and records one result per attempt.
func (r *Relay) publishedPolicies() ([]policy.Policy, error) {
	var out []policy.Policy
	if r.cfg.Resolver != "" {
		r.dns = &dane.Resolver{Addr: r.cfg.Resolver, Logger: r.log.With("part", "dns")}
	}
	if r.cfg.MTASTS {
		r.mtasts = &mtasts.Client{
			Cache:  &mtasts.DirCache{Dir: r.cfg.path("mta-sts")},
			Logger: r.log.With("part", "mta-sts"),
		}
		if r.dns != nil { // not a typed nil in the interface
			r.mtasts.Resolver = r.dns
		}
		out = append(out, r.mtasts)
	}
	if r.cfg.DANEResolver != "" {
		if !r.dns.Trusted() {
			r.log.Warn("the -dane-resolver is not on loopback: its AD bit is not trusted, so DANE never applies (RFC 7672 §1.3)",
				"resolver", r.cfg.DANEResolver)
		}
		r.dane = &dane.Policy{Resolver: r.dns, Logger: r.log.With("part", "dane")}
		out = append(out, r.dane)
	}
	if r.cfg.TLSRPT {
		r.tlsrpt = &tlsrpt.FileStore{Dir: r.cfg.path("tlsrpt"), Logger: r.log.With("part", "tlsrpt")}
	}
	return out, nil
}

// wireStandards completes the Connector for the standards flags, before
// its first use: Connector.DANE (MX and address lookups through the
// DNSSEC-aware resolver, each MX host checked against its own TLSA
// records, RFC 7672 §2.2, §3) and Connector.TLSRPT (one result per
// delivery attempt, RFC 8460 §4.3). The Connector records TLS-RPT results
// itself, so nothing else in the relay does. It also gives the outbound
// policy a logger for applied overrides. Calling it again is harmless.
func (r *Relay) wireStandards() {
	if r.connector == nil {
		return
	}
	if r.dns != nil {
		r.connector.DNS = r.dns
	}
	if r.dane != nil {
		r.connector.DANE = r.dane
	}
	if r.tlsrpt != nil { // not a typed nil in the interface
		r.connector.TLSRPT = r.tlsrpt
	}
	if p, ok := r.connector.Policy.(*outboundPolicy); ok && p.std.Logger == nil {
		p.std.Logger = r.log.With("part", "policy")
	}
}

// txtResolver is the TLS-RPT reporter's resolver for "_smtp._tls" records
// (RFC 8460 §3): -resolver, else nil (the system's).
func (r *Relay) txtResolver() tlsrpt.TXTResolver {
	if r.dns == nil { // not a typed nil in the interface
		return nil
	}
	return r.dns
}

// runPublished runs background maintenance of the published-policy caches
// (MTA-STS proactive refresh, RFC 8461 §10.1) until ctx is done.
func (r *Relay) runPublished(ctx context.Context) {
	if r.mtasts == nil {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.mtasts.Run(ctx)
	}()
}
