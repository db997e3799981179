package main

import (
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport/queue/pgstore"
)

// publishedPolicies creates the parts the standards flags enable:
//
//   - -resolver: the one resolver (r.dns) every lookup goes to: the
//     Connector's (MX, addresses, TLSA), the MTA-STS client's (also when
//     refreshing in the background) and the TLS-RPT reporter's;
//   - -mta-sts: an MTA-STS client (RFC 8461) with its cache under
//     -data/mta-sts, so that policies survive restarts;
//   - -dane-resolver: -resolver, plus a DANE policy (RFC 7672) through
//     that resolver, whose AD bit is believed only on loopback;
//   - -tlsrpt: the TLS-RPT result store (RFC 8460) under -data/tlsrpt.
//
// With -queue the MTA-STS cache, the TLS-RPT results and the reported
// days live in the shared database instead (pgstore), so that the relays
// share policies and send one report per domain per day.
func (r *Relay) publishedPolicies() {
	if r.cfg.Resolver != "" {
		r.dns = &dane.Resolver{Addr: r.cfg.Resolver, Logger: r.log.With("part", "dns")}
	}
	if r.cfg.MTASTS {
		var cache mtasts.Cache = &mtasts.DirCache{Dir: r.cfg.path("mta-sts")}
		if pg, ok := r.store.(*pgstore.Store); ok { // -queue: shared by the relays
			cache = pg.PolicyCache()
		}
		r.mtasts = &mtasts.Client{Cache: cache, Logger: r.log.With("part", "mta-sts")}
		if r.dns != nil { // not a typed nil in the interface
			r.mtasts.Resolver = r.dns
		}
	}
	if r.cfg.DANEResolver != "" {
		if !r.dns.Trusted() {
			r.log.Warn("the -dane-resolver is not on loopback: its AD bit is not trusted, so DANE never applies (RFC 7672 §1.3)",
				"resolver", r.cfg.DANEResolver)
		}
		r.dane = &dane.Policy{Resolver: r.dns, Logger: r.log.With("part", "dane")}
	}
	if r.cfg.TLSRPT {
		r.tlsrpt = &tlsrpt.FileStore{Dir: r.cfg.path("tlsrpt"), Logger: r.log.With("part", "tlsrpt")}
		if pg, ok := r.store.(*pgstore.Store); ok { // -queue: one report covers every relay
			r.tlsrpt = pg.TLSRPTStore()
		}
	}
}

// reportDays is where the TLS-RPT reporter marks the days it reported:
// with -queue the shared database, so that N relays send one report per
// domain per day; else its files (nil).
func (r *Relay) reportDays() tlsrpt.DayMarker {
	if pg, ok := r.store.(*pgstore.Store); ok {
		return pg.ReportDays()
	}
	return nil
}

// wireStandards hands the standards parts to the Connector before its
// first use: Connector.DNS, Connector.DANE (each MX host checked against
// its own TLSA records, RFC 7672 §2.2, §3) and Connector.TLSRPT (one
// result per delivery attempt, RFC 8460 §4.3; nothing else in the relay
// records them).
func (r *Relay) wireStandards() {
	if r.dns != nil { // not typed nils in the interfaces
		r.connector.DNS = r.dns
	}
	if r.dane != nil {
		r.connector.DANE = r.dane
	}
	if r.tlsrpt != nil {
		r.connector.TLSRPT = r.tlsrpt
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
