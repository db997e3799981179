package transport

// This file holds what the Connector does with published policies: DANE per
// MX host (RFC 7672), the REQUIRETLS conditions (RFC 8689 §4.2.1) and the
// TLS-RPT record of every attempt (RFC 8460 §4.3).

import (
	"context"
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

// danePolicy returns DANE, or else the DANE member of Policy
// (policy.DANEMember) when it is a *dane.Policy.
func (c *Connector) danePolicy() *dane.Policy {
	if c.DANE != nil {
		return c.DANE
	}
	if m, ok := c.Policy.(policy.DANEMember); ok {
		if d, ok := m.DANEMember().(*dane.Policy); ok {
			return d
		}
	}
	return nil
}

// daneTargets resolves the MX hosts of the group's domain through the
// DNSSEC-aware Connector.DANE (RFC 7672 §2.2): each target carries the
// host's authenticated addresses and its own TLSA decision.
func (c *Connector) daneTargets(ctx context.Context, d *dane.Policy, st *groupState) ([]target, *Error) {
	domain := st.g.domain
	dest, err := d.LookupMX(ctx, domain)
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
		byDANE := st.plan.UsesDANE(h.State())
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
func (c *Connector) daneHopTarget(ctx context.Context, d *dane.Policy, h *nextHop) (target, bool) {
	port := int(d.Port)
	if port == 0 {
		port = 25
	}
	if net.ParseIP(h.host) != nil || h.port != port {
		return target{}, false
	}
	dh := d.LookupHost(ctx, h.host)
	return target{host: h.host, port: h.port, addrs: ipsOf(dh.Addrs), resolved: true, dane: &dh}, true
}

func ipsOf(addrs []netip.Addr) []net.IP {
	out := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, net.IP(a.Unmap().AsSlice()))
	}
	return out
}

// mxAllowed applies the plan's MTA-STS "mx:" patterns to host
// (policy.Plan.AllowsMX), remembering the hosts an enforced policy refuses
// in st.refused and logging those a testing policy lets through.
func (c *Connector) mxAllowed(ctx context.Context, st *groupState, host string) (use, mismatch bool) {
	use, mismatch = st.plan.AllowsMX(host)
	switch {
	case !use:
		st.refused = append(st.refused, host)
	case mismatch:
		c.log().LogAttrs(ctx, slog.LevelWarn, "mx not allowed by policy (testing mode, used anyway)",
			slog.String("domain", st.req.Domain), slog.String("mx", host), slog.String("policy", policyAttr(st.req)))
	}
	return use, mismatch
}

// hostPlan asks the plan for one target's hop (policy.Plan.Host) and turns
// a refusal into the attempt's result.
func (c *Connector) hostPlan(ctx context.Context, st *groupState, t target) (policy.Hop, *attemptResult) {
	ph := policy.Host{Name: t.host, DANE: policy.DANENotLookedUp, HasAddrs: len(t.addrs) > 0}
	var cause error
	if h := t.dane; h != nil {
		ph.DANE, ph.Reason, cause = h.State(), h.Reason, h.Err
	} else {
		ph.Name = net.JoinHostPort(t.host, fmt.Sprint(t.port))
	}
	hop, r := st.plan.Host(ph)
	if hop.Note != "" {
		c.log().LogAttrs(ctx, slog.LevelInfo, "tls policy adjusted",
			slog.String("domain", st.req.Domain), slog.String("mx", t.host), slog.String("policy", policyAttr(st.req)),
			slog.String("reason", hop.Note), slog.String("queue_id", st.env.ID))
	}
	if r == nil {
		return hop, nil
	}
	ar := &attemptResult{err: refusalError(st.req, r, cause), retry: true, failure: r.Failure, mta: RemoteMTA{Host: t.host, Port: t.port}}
	if r.Kind != policy.RefuseREQUIRETLS {
		ar.dane = t.dane
	}
	return hop, ar
}

// refusalError is the delivery error of a plan's refusal; cause is the DANE
// lookup's error, if any.
func refusalError(req policy.Requirement, r *policy.Refusal, cause error) *Error {
	switch r.Kind {
	case policy.RefuseLookup:
		return localError(false, 7, 5, "", r.Summary, fmt.Errorf("%w: %w", ErrDANE, cause))
	case policy.RefuseAddress:
		return localError(false, 4, 3, "", r.Summary, cause)
	case policy.RefuseREQUIRETLS:
		return &Error{Local: true, Code: 550, EnhancedCode: EnhancedCode{5, 7, 30}, Message: r.Summary,
			Err: fmt.Errorf("%w: %s", ErrRequireTLS, r.Detail)}
	case policy.RefuseConfig:
		// 4.3.5: system incorrectly configured (RFC 3463 §3.4).
		return localError(false, 3, 5, "", r.Summary+"; deferring rather than guessing", fmt.Errorf("%w: %s", ErrPolicyLookup, r.Detail))
	}
	err := fmt.Errorf("%w: %s", ErrDANE, r.Detail)
	if r.Detail == "" && cause != nil {
		err = fmt.Errorf("%w: %w", ErrDANE, cause)
	}
	return tlsError(req, 5, "", r.Summary, err)
}

// daneStates returns the DANE state of each target, for
// policy.Plan.CheckRequireTLS.
func daneStates(targets []target) []policy.DANEState {
	out := make([]policy.DANEState, 0, len(targets))
	for _, t := range targets {
		if t.dane != nil {
			out = append(out, t.dane.State())
		}
	}
	return out
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
