package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// publishedPolicies returns the lookups of the policies destinations
// publish themselves, as the flags enable them: MTA-STS (RFC 8461, -mta-sts)
// with its cache under -data/mta-sts so that policies survive restarts, and
// DANE (RFC 7672, -dane-resolver) through a DNSSEC-validating resolver whose
// AD bit is believed only on loopback. They are combined with the static
// table by policy.Strictest (see outboundPolicy).
func (r *Relay) publishedPolicies() ([]policy.Policy, error) {
	var out []policy.Policy
	if r.cfg.MTASTS {
		r.mtasts = &mtasts.Client{
			Cache:  &mtasts.DirCache{Dir: r.cfg.path("mta-sts")},
			Logger: r.log.With("part", "mta-sts"),
		}
		out = append(out, r.mtasts)
	}
	if r.cfg.DANEResolver != "" {
		res := &dane.Resolver{Addr: r.cfg.DANEResolver, Logger: r.log.With("part", "dane")}
		if !res.Trusted() {
			r.log.Warn("the -dane-resolver is not on loopback: its AD bit is not trusted, so DANE never applies (RFC 7672 §1.3)",
				"resolver", r.cfg.DANEResolver)
		}
		r.dane = &dane.Policy{Resolver: res, Logger: r.log.With("part", "dane")}
		// transport.Connector (as of this writing) does not match TLSA
		// records itself: a destination that publishes usable ones fails
		// closed (ErrDANE), never falls back to plaintext.
		r.log.Warn("DANE enabled: destinations publishing usable TLSA records are deferred until the Connector verifies TLSA (fails closed)",
			"resolver", r.cfg.DANEResolver)
		out = append(out, r.dane)
	}
	return out, nil
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

// wrapDeliverer adds TLS-RPT recording (RFC 8460, -tlsrpt) around d.
func (r *Relay) wrapDeliverer(d queue.Deliverer) queue.Deliverer {
	if !r.cfg.TLSRPT {
		return d
	}
	r.tlsrpt = &tlsrpt.FileStore{Dir: r.cfg.path("tlsrpt"), Logger: r.log.With("part", "tlsrpt")}
	rd := &reportingDeliverer{next: d, store: r.tlsrpt, log: r.log.With("part", "tlsrpt")}
	if r.mtasts != nil {
		rd.stsCache = r.mtasts.Cache
	}
	return rd
}

// reportingDeliverer records one TLS-RPT result per SMTP session the
// Connector attempted (RFC 8460 §4.3): success when TLS was negotiated
// and passed the policy's checks, the §4.3 result type when it did not.
// Sessions that never reached TLS negotiation (connection refused) are not
// TLS results and are not recorded.
type reportingDeliverer struct {
	next     queue.Deliverer
	store    tlsrpt.Store
	stsCache mtasts.Cache // for the MTA-STS policy text ("policy-string"); nil without -mta-sts
	log      *slog.Logger
}

func (d *reportingDeliverer) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	res, err := d.next.Deliver(ctx, env, body, size)
	if res == nil {
		return res, err
	}
	reqs := map[string]policy.Requirement{}
	for _, rr := range res.Recipients {
		reqs[rr.Requirement.Domain] = rr.Requirement
	}
	for _, a := range res.Attempts {
		if a.TLS == nil && a.TLSFailure == transport.FailureNone {
			continue
		}
		req := reqs[a.Domain]
		rec := tlsrpt.Result{
			Time:                a.Start,
			PolicyDomain:        a.Domain,
			PolicyType:          policyType(req.Source),
			ResultType:          tlsrpt.ResultSuccess,
			ReceivingMXHostname: a.RemoteMTA.Host,
			MXHost:              req.MXPatterns,
		}
		for _, t := range req.TLSA {
			rec.PolicyString = append(rec.PolicyString, dane.FormatTLSA(t))
		}
		if rec.PolicyType == tlsrpt.PolicySTS && d.stsCache != nil {
			// RFC 8460 §4.3: the policy as fetched, one element per line.
			if e, ok, err := d.stsCache.Get(ctx, a.Domain); err == nil && ok {
				rec.PolicyString = e.Lines()
			}
		}
		if a.RemoteMTA.IP != nil {
			rec.ReceivingIP = a.RemoteMTA.IP.String()
		}
		if a.TLSFailure != transport.FailureNone {
			rec.ResultType = tlsrpt.ResultType(a.TLSFailure)
			if a.Err != nil {
				rec.AdditionalInformation = a.Err.Error()
			}
		}
		if err := d.store.Record(ctx, rec); err != nil {
			d.log.Warn("tls-rpt result not recorded", "domain", a.Domain, "error", err)
		}
	}
	return res, err
}

// policyType maps a decision's source to the TLS-RPT policy type.
func policyType(s policy.Source) tlsrpt.PolicyType {
	switch s {
	case policy.SourceMTASTS:
		return tlsrpt.PolicySTS
	case policy.SourceDANE:
		return tlsrpt.PolicyTLSA
	}
	return tlsrpt.PolicyNoPolicyFound
}
