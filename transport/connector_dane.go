package transport

// This file holds what the Connector does with published policies: DANE per
// MX host (RFC 7672), the REQUIRETLS conditions (RFC 8689 §4.2.1) and the
// TLS-RPT record of every attempt (RFC 8460 §4.3).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/tlsrpt"
)

// TLSReporter receives one TLS-RPT result per delivery attempt (RFC 8460
// §4.3). *tlsrpt.FileStore satisfies it, and so does every tlsrpt.Store.
// Implementations must be safe for concurrent use; Record is called
// synchronously on the delivery path, so it should be quick.
type TLSReporter interface {
	Record(ctx context.Context, r tlsrpt.Result) error
}

var _ TLSReporter = (*tlsrpt.FileStore)(nil)

// daneTargets resolves the MX hosts of the group's domain through the
// DNSSEC-aware Connector.DANE (RFC 7672 §2.2): each target carries the
// host's authenticated addresses and its own TLSA decision.
func (c *Connector) daneTargets(ctx context.Context, st *groupState) ([]target, *Error) {
	domain := st.g.domain
	dest, err := c.DANE.LookupMX(ctx, domain)
	if err != nil {
		// RFC 7672 §2.1.1: a failed lookup is never "no records": defer.
		return nil, localError(false, 4, 3, "", "DNSSEC-aware MX lookup for "+domain+" failed", err)
	}
	st.dest = dest
	if dest.MXAuthentic {
		// RFC 8689 §4.2.1: a DNSSEC-validated MX RRset authenticates the
		// MX hosts; the results say so.
		st.req.MXAuthenticated = true
	}
	switch {
	case dest.Null:
		return nil, &Error{Local: true, Code: 556, EnhancedCode: EnhancedCode{5, 1, 10}, Message: domain + " does not accept mail (null MX)",
			Err: ErrNullMX}
	case dest.NXDomain || len(dest.Hosts) == 0:
		return nil, &Error{Local: true, Code: 550, EnhancedCode: EnhancedCode{5, 4, 4}, Message: "domain " + domain + " not found",
			Err: ErrNoMX}
	}
	hosts := make([]*dane.Host, len(dest.Hosts))
	for i := range dest.Hosts {
		hosts[i] = &dest.Hosts[i]
	}
	// LookupMX sorts by preference; RFC 5321 §5.1 wants equals shuffled.
	shuffle := c.shuffle()
	for i := 0; i < len(hosts); {
		j := i
		for j < len(hosts) && hosts[j].Pref == hosts[i].Pref {
			j++
		}
		if sub := hosts[i:j]; len(sub) > 1 {
			shuffle(len(sub), func(a, b int) { sub[a], sub[b] = sub[b], sub[a] })
		}
		i = j
	}
	var out []target
	for _, h := range hosts {
		// A host that DANE checks is not subject to MTA-STS patterns (RFC
		// 8461 §2: DANE takes precedence where it applies).
		byDANE := h.Err == nil && len(h.TLSA) > 0 && daneApplies(st.req) && !st.relaxed()
		mismatch := false
		if !byDANE {
			var use bool
			if use, mismatch = c.mxAllowed(ctx, st, h.Name); !use {
				continue
			}
		}
		out = append(out, target{host: h.Name, port: c.port(), addrs: ipsOf(h.Addrs), resolved: true, dane: h, mxMismatch: mismatch,
			pref: h.Pref, implicit: dest.Implicit})
	}
	if len(out) == 0 {
		return nil, tlsErrorSubject(st.req, 4, 4, "no MX host of "+domain+" matches the policy's mx patterns",
			fmt.Errorf("%w: policy allows %v", ErrNoMX, st.req.MXPatterns))
	}
	return out, nil
}

// daneHopTarget is the target of a fixed next hop with its DANE decision
// (RFC 7672 §2.2.1: a configured host name is trusted like a secure MX
// RRset). Only for host names on the port whose TLSA records the
// dane.Policy looks up; otherwise DANE is not consulted.
func (c *Connector) daneHopTarget(ctx context.Context, h *nextHop) (target, bool) {
	port := int(c.DANE.Port)
	if port == 0 {
		port = 25
	}
	if net.ParseIP(h.host) != nil || h.port != port {
		return target{}, false
	}
	dh := c.DANE.LookupHost(ctx, h.host)
	return target{host: h.host, port: h.port, addrs: ipsOf(dh.Addrs), resolved: true, dane: &dh}, true
}

func ipsOf(addrs []netip.Addr) []net.IP {
	out := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, net.IP(a.Unmap().AsSlice()))
	}
	return out
}

// mxAllowed applies MTA-STS "mx:" patterns (RFC 8461 §4.1) and says
// whether host may be used and whether it failed the match: in enforce
// mode a host that matches none is not used (and remembered in
// st.refused); in testing mode it is used, logged, and its session
// reported as a failure (mismatch true). "TLS-Required: No" (RFC 8689
// §4.2.2) ignores the patterns.
func (c *Connector) mxAllowed(ctx context.Context, st *groupState, host string) (use, mismatch bool) {
	if st.req.AllowsMX(host) {
		return true, false
	}
	if st.relaxed() {
		return true, false
	}
	if st.req.Mode == policy.Enforce {
		st.refused = append(st.refused, host)
		return false, false
	}
	c.log().LogAttrs(ctx, slog.LevelWarn, "mx not allowed by policy (testing mode, used anyway)",
		slog.String("domain", st.req.Domain), slog.String("mx", host), slog.String("policy", policyAttr(st.req)))
	return true, true
}

// relaxed reports whether the message's "TLS-Required: No" is honoured
// for the group (see headerRelaxation): recipient-side policies, MTA-STS
// "mx:" patterns and DANE per host, are then ignored, and the level is the
// one headerRelaxation gives.
func (st *groupState) relaxed() bool {
	_, ok := headerRelaxation(st.req, st.env)
	return ok
}

// localFloor returns what the local administrator configured for req's
// destination: Level itself when the requirement comes from a static table
// entry, a route's own level or an override (in enforce mode), and in any
// case at least req.LocalFloor, the local level a published policy or the
// default outranked in policy.Strictest or policy.Standard. The configured
// default level is not counted (see policy.Requirement.LocalFloor).
func localFloor(req policy.Requirement) policy.Level {
	floor := req.LocalFloor
	switch req.Source {
	case policy.SourceStatic, policy.SourceRoute, policy.SourceOverride:
		if req.Mode == policy.Enforce {
			floor = max(floor, req.Level)
		}
	}
	return floor
}

// headerRelaxation returns the level a message carrying "TLS-Required: No"
// is delivered at, and whether the header is honoured at all.
//
// RFC 8689 §4.2.2 lets the header ask that recipient-side policy
// mechanisms such as MTA-STS and DANE be ignored when relaying a message
// for which security is unimportant. It does not let a message's author override what the local
// administrator configured for the destination: the header is written by
// whoever sends the message, and an on-path attacker who strips STARTTLS
// would read what the administrator required to be encrypted. So:
//
//   - REQUIRETLS wins over the header: not honoured.
//   - With a local floor (localFloor) of None, May or Encrypt, the header
//     is honoured: published policies are ignored and the level is
//     max(May, floor), Encrypt meaning TLS without certificate checks and
//     never plaintext. A requirement of None stays None (the header never
//     raises). The configured default level is relaxed like a published
//     policy, so that TLS-RPT reports (sent with the header, RFC 8460 §5.3)
//     reach domains whose TLS is broken when only recipient-side policies
//     (and the blanket default) demand TLS.
//   - With a local floor of DANE, dane-only, Verify or Secure the
//     requirement is kept whole: a local Verify or Secure already demands
//     at least what the published policy does, and a local DANE level
//     cannot be separated from the DNSSEC records the header would drop;
//     erring strict, the header is not honoured.
func headerRelaxation(req policy.Requirement, env *Envelope) (policy.Level, bool) {
	if !env.TLSRequiredNo || env.RequireTLS {
		return req.Level, false
	}
	floor := localFloor(req)
	if floor >= policy.DANE {
		return req.Level, false
	}
	if req.Level == policy.None {
		return policy.None, true
	}
	return max(policy.May, floor), true
}

// daneApplies reports whether DANE, where a host has usable TLSA records,
// takes over from req: not under an explicit override, nor under a static
// (or default or route) Verify or Secure, which outranks DANE as an
// explicit level does in Postfix; always over MTA-STS (RFC 8461 §2); and
// over any weaker level, which it raises (RFC 7672 §2.2).
func daneApplies(req policy.Requirement) bool {
	if req.Source == policy.SourceOverride {
		return false
	}
	if req.Source == policy.SourceMTASTS {
		return true
	}
	return !req.Level.VerifiesPKIX()
}

// hostPlan adapts the group's plan to one target's DANE decision (RFC 7672
// §2.2): usable TLSA records make TLS mandatory and the certificate is
// checked against that host's records only, with SNI set to its TLSA base
// domain; only unusable records make TLS mandatory without
// authentication; no records leave the group's plan (dane: may). A host
// whose lookups failed, or that has no records under dane-only, is not
// used: the failure comes back as an attempt result.
func (c *Connector) hostPlan(ctx context.Context, st *groupState, t target) (plan, *attemptResult) {
	p := st.groupPlan
	h := t.dane
	fail := func(e *Error, ft policy.FailureType) (plan, *attemptResult) {
		return p, &attemptResult{err: e, retry: true, failure: ft, dane: h, mta: RemoteMTA{Host: t.host, Port: t.port}}
	}
	if h == nil {
		// A target DANE was not consulted for: with Connector.DANE set, only
		// a fixed next hop given as an IP literal or on a port other than
		// the dane.Policy's. makePlan left DANE's decision to this function,
		// so fail closed where the requirement needs DANE: dane-only never
		// falls back (RFC 7672 §2.2 fallback is for "dane" only), and TLSA
		// records handed over by the Policy cannot be checked here.
		if c.DANE == nil || st.relaxed() {
			return p, nil
		}
		req := st.req
		switch {
		case req.Level == policy.DANEOnly, req.Mode == policy.Testing && req.Floor == policy.DANEOnly:
			return fail(tlsError(req, 5, "", "dane-only but DANE is not looked up for "+net.JoinHostPort(t.host, fmt.Sprint(t.port)),
				fmt.Errorf("%w: no TLSA lookup for an IP literal or a port other than the DANE port", ErrDANE)), policy.FailureDANERequired)
		case req.Level == policy.DANE && len(req.TLSA) > 0:
			return fail(tlsError(req, 5, "", "TLSA records cannot be checked for "+net.JoinHostPort(t.host, fmt.Sprint(t.port)),
				fmt.Errorf("%w: TLSA records from the policy, but DANE is not looked up for this next hop; failing closed", ErrDANE)),
				policy.FailureDANERequired)
		case req.Level == policy.DANE && req.WithoutTLSA.VerifiesPKIX():
			return plan{tryTLS: true, required: true, kind: checkVerify, enforce: true,
				reason: "no TLSA lookup for this next hop: held to the mta-sts policy"}, nil
		}
		return p, nil
	}
	if st.relaxed() {
		// RFC 8689 §4.2.2: recipient-side policies such as DANE are ignored.
		if len(t.addrs) == 0 && h.Err != nil {
			return fail(localError(false, 4, 3, "", "address lookup for "+t.host+" failed", h.Err), policy.FailureNone)
		}
		if len(h.TLSA) > 0 || h.Err != nil {
			c.log().LogAttrs(ctx, slog.LevelInfo, "tls policy adjusted",
				slog.String("domain", st.req.Domain), slog.String("mx", t.host), slog.String("policy", policyAttr(st.req)),
				slog.String("reason", "TLS-Required: No header: DANE not applied (RFC 8689 §4.2.2)"), slog.String("queue_id", st.env.ID))
		}
		return p, nil
	}
	req := st.req
	switch {
	case h.Err != nil && errors.Is(h.Err, dane.ErrLookupFailed):
		// RFC 7672 §2.2: a failed TLSA or address lookup makes the host
		// unusable; the message is deferred, never sent with less.
		e := localError(false, 7, 5, "", "DNSSEC lookup for "+t.host+" failed; not using this host",
			fmt.Errorf("%w: %w", ErrDANE, h.Err))
		return fail(e, dane.ResultType(h.Err))
	case !daneApplies(req) && len(t.addrs) > 0:
		// An override or an explicit Verify/Secure decides (dane-only's
		// "no records" does not apply to it).
		return p, nil
	case h.Err != nil:
		return fail(tlsError(req, 5, "", "DANE required but "+t.host+" has no usable TLSA records",
			fmt.Errorf("%w: %w", ErrDANE, h.Err)), policy.FailureDANERequired)
	case !daneApplies(req):
		return p, nil
	case len(h.TLSA) > 0:
		return plan{tryTLS: true, required: true, kind: checkDANE, enforce: true, dane: h,
			reason: "dane: " + h.Reason}, nil
	case req.Level == policy.DANEOnly, req.Mode == policy.Testing && req.Floor == policy.DANEOnly:
		// A static dane-only entry with a dane.Policy that falls back, or a
		// dane-only floor under a testing policy.
		return fail(tlsError(req, 5, "", "DANE required but "+t.host+" has no usable TLSA records",
			fmt.Errorf("%w: %s: %s", ErrDANE, t.host, h.Reason)), policy.FailureDANERequired)
	case req.Level == policy.DANE && req.WithoutTLSA.VerifiesPKIX():
		// DANE took precedence over an enforced MTA-STS policy, which still
		// governs this host (policy.Standard): PKIX chain and MX host name.
		return plan{tryTLS: true, required: true, kind: checkVerify, enforce: true,
			reason: "no usable TLSA records: held to the mta-sts policy"}, nil
	case h.Level == policy.Encrypt && !p.required:
		// RFC 7672 §2.2: only unusable records: TLS without authentication.
		// (A testing-mode check, if any, stays reported only.)
		np := p
		np.tryTLS, np.required = true, true
		np.reason = "dane: " + h.Reason
		return np, nil
	}
	return p, nil
}

// checkRequireTLS says whether the group can carry a REQUIRETLS message at
// all, before any connection (RFC 8689 §4.2.1). Per host, transact checks
// the rest: TLS, a verified certificate and REQUIRETLS in the EHLO reply.
//
// RFC 8689 §4.2.1 (sending MTA requirements) asks that the MX lookup be
// DNSSEC-validated or confirmed by an MTA-STS policy in enforce mode, that
// the server's certificate be verified (PKIX with the MX host name, or
// DANE), and that the server advertise REQUIRETLS after STARTTLS. Level
// Secure is refused like Verify unless the MX set is authenticated: Secure
// checks the certificate against the next-hop domain, which resists MX
// forgery too, but §4.2.1 makes the authenticated MX lookup a requirement
// of its own, not one a stronger certificate check can replace, and a
// REQUIRETLS sender relies on every hop applying the RFC's rule. A fixed next hop
// from local configuration (a smarthost route) involves no MX lookup and
// is not refused for it.
func checkRequireTLS(req policy.Requirement, mxAuth, fixedHop, daneVerifies bool) error {
	if req.Mode != policy.Enforce {
		return fmt.Errorf("policy %s is in testing mode", req.Source)
	}
	if !req.Level.VerifiesPKIX() && !daneVerifies {
		return fmt.Errorf("level %s does not verify the server certificate", req.Level)
	}
	if !fixedHop && !mxAuth {
		return errors.New("MX host names are not authenticated by DNSSEC or an enforced MTA-STS policy")
	}
	return nil
}

// mxAuthenticated reports whether the MX hosts of the group are
// authenticated in the sense of RFC 8689 §4.2.1: the MX RRset was
// DNSSEC-validated by Connector.DANE's resolver, or the enforced policy
// says so (Requirement.MXAuthenticated: an MTA-STS policy in enforce mode,
// whose patterns the targets were filtered by, or a DANE lookup).
func (st *groupState) mxAuthenticated() bool {
	if st.dest != nil && st.dest.MXAuthentic {
		return true
	}
	return st.req.MXAuthenticated && st.req.Mode == policy.Enforce
}

// anyDANEHost reports whether DANE will verify at least one target.
func anyDANEHost(req policy.Requirement, targets []target) bool {
	if !daneApplies(req) {
		return false
	}
	for _, t := range targets {
		if t.dane != nil && t.dane.Err == nil && len(t.dane.TLSA) > 0 {
			return true
		}
	}
	return false
}

// recordTLSRPT records ar for TLS reporting (RFC 8460 §4.3): attempts that
// negotiated TLS (success unless a failure was found, as in MTA-STS testing
// mode) and attempts that failed for a TLS or DANE reason. Attempts that
// never reached TLS (connection refused, a 4xx greeting) are not TLS
// results. Fixed next hops are not reported: TLS-RPT is per recipient
// policy domain. The error text goes to "failure-reason-code", which RFC
// 8460 §4.3 defines as "a TLS-related error code or error message"
// ("additional-information" is a URI).
//
// With the group's first attempt it also records the requirement's
// discovery failures (recordDiscoveryFailures).
func (c *Connector) recordTLSRPT(ctx context.Context, st *groupState, ar *attemptResult, start time.Time) {
	if c.TLSRPT == nil || st.g.hop != nil || st.g.domain == "" {
		return
	}
	if len(st.req.DiscoveryFailures) > 0 && firstAttempt(st) {
		c.recordDiscoveryFailures(ctx, st, start)
	}
	if len(ar.refused) > 0 {
		c.recordMXRefused(ctx, st, ar.refused, start)
		return
	}
	if ar.tls == nil && ar.failure == policy.FailureNone {
		return
	}
	r := tlsrpt.Result{
		Time:                start,
		PolicyDomain:        st.g.domain,
		PolicyType:          tlsrpt.PolicyNoPolicyFound,
		ResultType:          tlsrpt.ResultSuccess,
		ReceivingMXHostname: ar.mta.Host,
	}
	switch {
	case ar.dane != nil || ar.failure == policy.FailureDANERequired || ar.failure == policy.FailureDNSSECInvalid || ar.failure == policy.FailureTLSAInvalid:
		r.PolicyType = tlsrpt.PolicyTLSA
		// ar.dane is nil for a failure decided before any host was looked
		// at (dane-only without records, a failed DNSSEC MX lookup).
		if ar.dane != nil {
			for _, t := range ar.dane.TLSA {
				r.PolicyString = append(r.PolicyString, dane.FormatTLSA(t))
			}
		}
	case st.req.Source == policy.SourceMTASTS || len(st.req.PolicyString) > 0:
		r.PolicyType = tlsrpt.PolicySTS
		r.PolicyString = append([]string(nil), st.req.PolicyString...)
		r.MXHost = append([]string(nil), st.req.MXPatterns...)
	}
	if ar.mxMismatch && r.PolicyType == tlsrpt.PolicySTS {
		// MTA-STS testing mode: the session used an MX host outside the
		// policy's patterns. MX host validation is part of policy
		// validation (RFC 8461 §4.1, §5); it fails before the certificate
		// is looked at (§4.2), so it is the session's result, with any TLS
		// failure named after it.
		reason := mxMismatchReason(ar.mta.Host)
		if ar.failure != policy.FailureNone {
			reason += "; also " + string(ar.failure)
		}
		r.ResultType = policy.FailureValidation
		r.FailureReasonCode = reason
		if ar.mta.IP != nil {
			r.ReceivingIP = ar.mta.IP.String()
		}
		if ar.local != nil {
			r.SendingMTAIP = ar.local.String()
		}
	} else if ar.failure != policy.FailureNone {
		r.ResultType = ar.failure
		if ar.mta.IP != nil {
			r.ReceivingIP = ar.mta.IP.String()
		}
		if ar.local != nil {
			r.SendingMTAIP = ar.local.String()
		}
		if ar.err != nil {
			r.FailureReasonCode = truncate(ar.err.Error(), 200)
		} else if ar.cause != nil {
			r.FailureReasonCode = truncate(ar.cause.Error(), 200)
		}
	}
	c.recordResult(ctx, r)
}

// mxMismatchReason is the failure-reason-code of a session (or refusal)
// whose MX host matches none of the MTA-STS policy's mx patterns. RFC 8460
// §4.3 has no result type for it: it is a "validation-failure" (§4.3.1, "a
// general failure for a reason not matched by a category above";
// certificate-host-mismatch is about the certificate, which may be valid
// for the MX host), and this code says which validation failed.
func mxMismatchReason(host string) string {
	return "mtasts-policy-mx-mismatch: " + host + " matches none of the policy's mx patterns"
}

// recordMXRefused records one TLS-RPT validation-failure per MX host that
// an enforced MTA-STS policy refused (RFC 8461 §4.1, §5), when no MX host
// was left to deliver to, so that the domain learns from its reports that
// its policy blocks its mail. No session took place: there is no IP.
func (c *Connector) recordMXRefused(ctx context.Context, st *groupState, hosts []string, start time.Time) {
	for _, h := range hosts {
		c.recordResult(ctx, tlsrpt.Result{
			Time:                start,
			PolicyDomain:        st.g.domain,
			PolicyType:          tlsrpt.PolicySTS,
			PolicyString:        append([]string(nil), st.req.PolicyString...),
			MXHost:              append([]string(nil), st.req.MXPatterns...),
			ResultType:          policy.FailureValidation,
			ReceivingMXHostname: h,
			FailureReasonCode:   mxMismatchReason(h),
		})
	}
}

func (c *Connector) recordResult(ctx context.Context, r tlsrpt.Result) {
	if err := c.TLSRPT.Record(ctx, r); err != nil {
		c.log().LogAttrs(ctx, slog.LevelWarn, "tls-rpt result not recorded",
			slog.String("domain", r.PolicyDomain), slog.String("error", err.Error()))
	}
}

// recordDiscoveryFailures records one TLS-RPT failure per element of the
// requirement's DiscoveryFailures (RFC 8460 §4.3.2.2: the domain publishes
// an MTA-STS policy that could not be fetched, was invalid or was served
// without a WebPKI-valid certificate), under its policy type ("sts") and,
// when a cached policy was applied instead, under that policy's
// policy-string and mx-host, so that a report shows the failure next to
// the sessions that used the policy. These failures concern the policy
// host, not an SMTP session, so they carry no receiving MX or IP.
//
// They are recorded once per Deliver call and domain, with its first
// delivery attempt, not once per MX session: the policy is discovered
// once per delivery, and RFC 8460 §4.3 counts sessions by how they failed,
// so one delivery that tried three MX hosts does not make three policy
// fetch failures. (mox counts its recipient-domain policy failure the same
// way.) Each session's own result is recorded besides, as usual: under the
// policy that was applied (no-policy-found when the domain was delivered
// to as if it published nothing, RFC 8461 §5).
func (c *Connector) recordDiscoveryFailures(ctx context.Context, st *groupState, start time.Time) {
	for _, f := range st.req.DiscoveryFailures {
		if f.ResultType == "" {
			continue
		}
		pt := tlsrpt.PolicyType(f.PolicyType)
		if !pt.Valid() {
			pt = tlsrpt.PolicySTS
		}
		r := tlsrpt.Result{
			Time:              start,
			PolicyDomain:      st.g.domain,
			PolicyType:        pt,
			PolicyString:      append([]string(nil), f.PolicyString...),
			MXHost:            append([]string(nil), f.MXPatterns...),
			ResultType:        f.ResultType,
			FailureReasonCode: truncate(f.Detail, 200),
		}
		c.log().LogAttrs(ctx, slog.LevelInfo, "tls-rpt policy discovery failure",
			slog.String("domain", r.PolicyDomain), slog.String("policy_type", string(r.PolicyType)),
			slog.String("result", string(r.ResultType)), slog.String("detail", f.Detail), slog.String("queue_id", st.env.ID))
		c.recordResult(ctx, r)
	}
}

// firstAttempt reports whether the attempt being recorded is the group's
// first: logAttempt has just appended it to the Result, and no earlier
// attempt of this Deliver call was for the same domain (there is one group
// per recipient domain; fixed next hops are not reported).
func firstAttempt(st *groupState) bool {
	n := 0
	for _, a := range st.res.Attempts {
		if a.Domain == st.req.Domain {
			n++
		}
	}
	return n == 1
}

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	return s[:n]
}
