package transport

// This file holds Connector.Check: a delivery that stops where MAIL FROM
// would be sent. It runs deliverGroup itself with a checkProbe, so that
// the routing, the policy lookup, the MX lookup, the plan per host and the
// TLS checks are the ones delivery uses and cannot disagree with it; the
// probe only watches (its methods are called from hooks in deliverGroup,
// dialSession and logAttempt, and do nothing when the probe is nil).

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/transport/smtpclient"
)

// CheckReport explains what delivery to one domain would do, and why
// (Connector.Check). Its JSON form is stable for scripts.
type CheckReport struct {
	// Domain is the recipient domain checked.
	Domain string `json:"domain"`
	// Time is when the check started.
	Time time.Time `json:"time"`
	// NextHop is the fixed next hop "[host]:port" of the Route that
	// applies; empty for MX delivery.
	NextHop string `json:"next_hop,omitempty"`
	// MX is the outcome of the MX lookup (RFC 5321 §5.1, RFC 7505).
	MX CheckMX `json:"mx"`
	// Policy is the TLS requirement that applies, and where it came from.
	Policy CheckPolicy `json:"policy"`
	// RequireTLS says whether a message carrying REQUIRETLS (RFC 8689)
	// could be sent to this destination at all.
	RequireTLS CheckRequireTLS `json:"requiretls"`
	// Hosts are the hosts examined, in the order delivery tries them.
	Hosts []CheckHost `json:"hosts"`
	// Outcome is what delivery would do: the result a message to this
	// domain would get, with the DSN status it would carry.
	Outcome CheckOutcome `json:"outcome"`
}

// CheckMX is the MX lookup of a check.
type CheckMX struct {
	// Hosts are the MX hosts in the order delivery tries them (after
	// MTA-STS "mx:" patterns in enforce mode removed those they refuse).
	Hosts []string `json:"hosts"`
	// Null: the domain publishes a null MX (RFC 7505): it accepts no mail.
	Null bool `json:"null_mx,omitempty"`
	// Implicit: no MX records: the domain itself is the mail exchanger
	// (RFC 5321 §5.1).
	Implicit bool `json:"implicit_mx,omitempty"`
	// DNSSEC: the MX RRset was DNSSEC-validated (only known with
	// Connector.DANE, RFC 7672 §2.2).
	DNSSEC bool `json:"dnssec"`
	// Refused lists the MX hosts that an enforced MTA-STS policy's "mx:"
	// patterns exclude (RFC 8461 §4.1).
	Refused []string `json:"refused_by_policy,omitempty"`
}

// CheckPolicy is the requirement of a check, in words. Requirement holds
// it as the Connector applies it.
type CheckPolicy struct {
	// Level is the Postfix level name ("verify", "dane-only").
	Level string `json:"level"`
	// Source and Reason say where the decision came from (the table entry,
	// the MTA-STS policy, the DANE records, the default).
	Source policy.Source `json:"source"`
	Reason string        `json:"reason,omitempty"`
	// Mode is "enforce" or "testing" (RFC 8461 §5).
	Mode string `json:"mode"`
	// OnFailure is "defer" or "bounce": what an unmet requirement does.
	OnFailure string `json:"on_failure"`
	// MinTLS is the lowest TLS version accepted where TLS is required.
	MinTLS     string   `json:"min_tls"`
	MXPatterns []string `json:"mx_patterns,omitempty"`
	Match      []string `json:"match,omitempty"`
	// Published is the MTA-STS policy that was fetched (or cached) and
	// applied, one line per element (RFC 8461 §3.2; TLS-RPT's
	// policy-string, RFC 8460 §4.3).
	Published []string `json:"published,omitempty"`
	// Adjusted says why the Connector plans differently from Level (a
	// testing-mode policy, DANE without records), if it does.
	Adjusted string `json:"adjusted,omitempty"`
	// DiscoveryFailures are published policies that could not be
	// discovered (RFC 8460 §4.3.2.2), as "result-type: detail".
	DiscoveryFailures []string `json:"discovery_failures,omitempty"`
	// Requirement is the full decision.
	Requirement policy.Requirement `json:"-"`
}

// CheckRequireTLS is the group-level REQUIRETLS condition (RFC 8689
// §4.2.1); each host must also verify and advertise REQUIRETLS
// (CheckHost.RequireTLS).
type CheckRequireTLS struct {
	Possible bool   `json:"possible"`
	Reason   string `json:"reason,omitempty"`
}

// CheckHost is one host examined by a check.
type CheckHost struct {
	// Host is the MX host (or fixed next hop), Preference its MX
	// preference (RFC 5321 §5.1), IP and Port the address dialled.
	Host       string `json:"host"`
	Preference int    `json:"preference"`
	IP         string `json:"ip,omitempty"`
	Port       int    `json:"port"`
	// Requires is what the plan for this host demands, in words
	// ("tls, verify: PKIX chain and MX host name").
	Requires string `json:"requires"`
	// TLSRequired: plaintext is refused on this host.
	TLSRequired bool `json:"tls_required"`
	// Reason says why the plan for this host differs from the policy's
	// level (DANE records, testing mode), if it does.
	Reason string `json:"reason,omitempty"`
	// MXPatternMismatch: the host matches none of a testing-mode MTA-STS
	// policy's patterns and would be used anyway (RFC 8461 §5).
	MXPatternMismatch bool       `json:"mx_pattern_mismatch,omitempty"`
	DANE              *CheckDANE `json:"dane,omitempty"`
	// Greeting is the first line of the server's 220 greeting.
	Greeting string `json:"greeting,omitempty"`
	// STARTTLS: the server offered STARTTLS (RFC 3207).
	STARTTLS bool `json:"starttls_offered"`
	// PlaintextFallback, when set, says why the handshake failed and the
	// session was retried in plaintext, as the policy allows.
	PlaintextFallback string `json:"plaintext_fallback,omitempty"`
	// Extensions are the EHLO keywords of the session delivery would use
	// (after STARTTLS when TLS was negotiated), with their parameters.
	Extensions []string `json:"extensions,omitempty"`
	// RequireTLS: the session is verified TLS and the server advertises
	// REQUIRETLS (RFC 8689 §4.2.1).
	RequireTLS bool      `json:"requiretls"`
	TLS        *CheckTLS `json:"tls,omitempty"`
	// Outcome is what delivery through this host would do.
	Outcome CheckOutcome `json:"outcome"`
}

// CheckDANE is a host's DANE decision (RFC 7672 §2.2).
type CheckDANE struct {
	// TLSA are the usable DNSSEC-validated records, in presentation form.
	TLSA []string `json:"tlsa,omitempty"`
	// Unusable counts authenticated records that are not usable.
	Unusable int `json:"unusable,omitempty"`
	// DNSSEC: the host's addresses were DNSSEC-validated.
	DNSSEC bool `json:"dnssec"`
	// Level is the host's DANE level (dane, dane-only: verify against the
	// records; encrypt: only unusable records; may: none), Reason why.
	Level  string `json:"level"`
	Reason string `json:"reason,omitempty"`
	// Error is why the host is not used (a failed lookup, dane-only
	// without usable records).
	Error string `json:"error,omitempty"`
}

// CheckTLS is the handshake a check saw (also when the certificate was
// then refused).
type CheckTLS struct {
	// Version and Cipher are named as in the delivery log ("TLSv1.3").
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
	// ServerName is the SNI sent: the host name, or the TLSA base domain
	// under DANE (RFC 7672 §8.1); empty for an IP address (RFC 6066 §3).
	ServerName string `json:"server_name,omitempty"`
	// Verified: the certificate passed the check the plan asks for.
	Verified bool `json:"verified"`
	// Failure names a refused certificate or version in TLS-RPT terms.
	Failure policy.FailureType `json:"failure,omitempty"`
	// Chain is the certificate chain as the server sent it, leaf first.
	Chain []CheckCert `json:"chain"`
	// Levels is the chain checked against each level, whatever the plan.
	Levels []CheckLevel `json:"levels"`
}

// CheckCert is one certificate of a chain.
type CheckCert struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	DNSNames  []string  `json:"dns_names,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// CheckLevel is the verdict of one level's certificate and version check
// (Postfix's encrypt, verify, secure; RFC 7672 DANE when the host has
// usable TLSA records) on the handshake.
type CheckLevel struct {
	// Level is "encrypt", "verify", "secure" or "dane".
	Level string `json:"level"`
	// OK: the handshake would pass this level's check.
	OK bool `json:"ok"`
	// Failure and Error say why not, Failure in TLS-RPT terms.
	Failure policy.FailureType `json:"failure,omitempty"`
	Error   string             `json:"error,omitempty"`
}

// CheckOutcome is what delivery would do, with the reply and the RFC 3463
// status a DSN would carry.
type CheckOutcome struct {
	// Result is what delivery would do, in the delivery's own terms:
	// Delivered (a host met the requirement and was ready for MAIL FROM),
	// Deferred (the message would stay queued and be retried) or Failed
	// (it would be returned to its sender with a DSN now).
	Result Status `json:"result"`
	// Code and Status are the SMTP reply code and enhanced status code
	// (250 2.0.0 when a host was ready for MAIL FROM).
	Code   int    `json:"code"`
	Status string `json:"status"`
	// Message is the reply text with its cause.
	Message string `json:"message,omitempty"`
	// TLSFailure names the TLS failure in TLS-RPT terms (RFC 8460 §4.3).
	TLSFailure policy.FailureType `json:"tls_failure,omitempty"`
	// Host is the host the outcome concerns, if one.
	Host string `json:"host,omitempty"`
}

// Check does everything a delivery to domain would do up to MAIL FROM, and
// sends no MAIL: the route and the policy lookup (MTA-STS, DANE, the
// static table, through Policy and DANE as Deliver asks them), the MX
// lookup (RFC 5321 §5.1, null MX RFC 7505), and for each host the plan,
// the connection, EHLO, STARTTLS (RFC 3207), the handshake and the
// certificate check, and QUIT (RFC 5321 §4.1.1.10) where delivery would
// send MAIL FROM. Unlike delivery it goes on to the next hosts after one
// that would take the message (up to MaxAddresses addresses in all), and
// it neither uses nor fills the connection pool or the TLS session cache,
// and records nothing for TLS-RPT. Route credentials are sent, as
// delivery sends them (only over verified TLS).
//
// The report's Outcome is the one Deliver would give a message with one
// recipient at domain, without REQUIRETLS. The error is non-nil only for
// a malformed domain or a Connector that fails Validate.
func (c *Connector) Check(ctx context.Context, domain string) (*CheckReport, error) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rcpt := "postmaster@" + domain
	if domain == "" || recipientDomain(rcpt) != domain || !validHost(domain) || net.ParseIP(domain) != nil {
		return nil, fmt.Errorf("transport: %q is not a domain name", domain)
	}
	c.init()
	ctx = c.lookupContext(ctx)
	env := &Envelope{ID: "check", Recipients: []Recipient{{Address: rcpt}}}
	groups, err := c.groups(env)
	if err != nil {
		return nil, err
	}
	groups = c.splitHops(ctx, env, groups)
	rep := &CheckReport{Domain: domain, Time: c.now(), Hosts: []CheckHost{}, MX: CheckMX{Hosts: []string{}}}
	res := &Result{Recipients: []RecipientResult{{Recipient: env.Recipients[0]}}}
	for _, g := range groups {
		if g.hop != nil {
			rep.NextHop = g.hop.key()
		}
		c.deliverGroup(ctx, env, nil, 0, g, res, &checkProbe{rep: rep})
	}
	rr := res.Recipients[0]
	rep.Policy.fill(rr.Requirement)
	rep.Outcome = outcomeOf(rr.Status, rr.Reply, rr.TLSFailure, rr.RemoteMTA.Host)
	if rr.Reply != nil && errors.Is(rr.Reply, ErrNullMX) {
		rep.MX.Null = true
	}
	return rep, nil
}

func (p *CheckPolicy) fill(req policy.Requirement) {
	p.Requirement = req
	p.Level = req.Level.String()
	p.Source = req.Source
	p.Reason = req.Reason
	p.Mode = req.Mode.String()
	p.OnFailure = req.OnFailure.String()
	p.MinTLS = (&TLSInfo{Version: req.EffectiveMinVersion()}).VersionName()
	p.MXPatterns = req.MXPatterns
	p.Match = req.Match
	for _, l := range req.PolicyString {
		p.Published = append(p.Published, clip(l, 300))
	}
	for _, f := range req.DiscoveryFailures {
		p.DiscoveryFailures = append(p.DiscoveryFailures, clip(strings.TrimSpace(string(f.ResultType)+": "+f.Detail), 500))
	}
}

func outcomeOf(v Status, e *Error, ft policy.FailureType, host string) CheckOutcome {
	o := CheckOutcome{Result: v, TLSFailure: ft, Host: host}
	if e != nil {
		o.Code, o.Status, o.Message = e.Code, e.EnhancedCode.String(), e.Message
		if e.Err != nil && e.Code >= 400 {
			o.Message += ": " + e.Err.Error()
		}
		o.Message = clip(o.Message, 1000)
	} else if v == Deferred {
		o.Code, o.Status = 451, "4.0.0"
	}
	return o
}

// checkProbe watches one group's delivery for Check. Its methods are
// called from the delivery code and are no-ops on a nil probe.
type checkProbe struct {
	rep *CheckReport
	// The host being tried and what its session showed so far.
	t        *target
	greet    string
	ext      map[string]string
	starttls bool
	check    *tlsCheck
	plain    string // why the session fell back to plaintext
}

// probeSession ends a session that is ready for MAIL FROM with QUIT and
// finishes the pending recipients as a delivery would finish them had
// the transaction succeeded.
func (c *Connector) probeSession(st *groupState, s *session, pending []int) *attemptResult {
	ti := s.tlsInfo()
	s.Quit(context.Background())
	e := &Error{Code: 250, EnhancedCode: EnhancedCode{2, 0, 0}, Message: "ready for MAIL FROM (not sent: check)"}
	st.finishAll(pending, e, s.mta, ti, s.failure, c.now())
	return &attemptResult{code: 250, retry: true}
}

func (p *checkProbe) host(t target) {
	if p == nil {
		return
	}
	*p = checkProbe{rep: p.rep, t: &t}
}

func (p *checkProbe) greeting(r *smtpclient.Reply) {
	if p == nil || r == nil || len(r.Lines) == 0 {
		return
	}
	p.greet = clip(r.Lines[0], 200)
}

func (p *checkProbe) ehlo(ext map[string]string, overTLS bool) {
	if p == nil {
		return
	}
	p.ext = ext
	if !overTLS {
		_, p.starttls = ext["STARTTLS"]
	}
}

func (p *checkProbe) handshake(v *tlsCheck) {
	if p != nil {
		p.check = v
	}
}

func (p *checkProbe) fallback(cause error) {
	if p != nil {
		p.plain = clip(cause.Error(), 300)
	}
}

// targets records the hosts delivery will try and the group-level
// REQUIRETLS condition.
func (p *checkProbe) targets(st *groupState, ts []target) {
	if p == nil {
		return
	}
	for _, t := range ts {
		p.rep.MX.Hosts = append(p.rep.MX.Hosts, t.host)
		p.rep.MX.Implicit = p.rep.MX.Implicit || t.implicit
	}
	p.rep.MX.DNSSEC = st.dest != nil && st.dest.MXAuthentic
	p.rep.MX.Refused = st.refused
	p.rep.Policy.Adjusted = st.plan.Group.Reason
	// As if the message asked for REQUIRETLS.
	rt := st.plan
	rt.Message.RequireTLS = true
	r := rt.CheckRequireTLS(st.dest != nil && st.dest.MXAuthentic, st.g.hop != nil, daneStates(ts))
	p.rep.RequireTLS = CheckRequireTLS{Possible: r == nil}
	if r != nil {
		p.rep.RequireTLS.Reason = r.Detail
	}
}

// attempt records one attempt of the host being tried (logAttempt calls
// it for every attempt, and for failures decided before any host).
func (p *checkProbe) attempt(c *Connector, st *groupState, ar *attemptResult) {
	if p == nil {
		return
	}
	if p.t == nil {
		// A failure before any host: the outcome says it; record the
		// hosts an enforced MTA-STS policy refused.
		if len(ar.refused) > 0 {
			p.rep.MX.Refused = ar.refused
		}
		return
	}
	t := p.t
	h := CheckHost{Host: t.host, Preference: int(t.pref), Port: t.port, IP: ipString(ar.mta.IP),
		MXPatternMismatch: t.mxMismatch, Greeting: p.greet, STARTTLS: p.starttls, PlaintextFallback: p.plain}
	h.TLSRequired, h.Reason = st.hop.Required, st.hop.Reason
	h.Requires = st.hop.String()
	if d := t.dane; d != nil {
		cd := &CheckDANE{Unusable: d.Unusable, DNSSEC: d.AddrsAuthentic, Level: d.Level.String(), Reason: d.Reason}
		for _, r := range d.TLSA {
			cd.TLSA = append(cd.TLSA, dane.FormatTLSA(r))
		}
		if d.Err != nil {
			cd.Error = clip(d.Err.Error(), 500)
		}
		cd.Reason = clip(cd.Reason, 500)
		h.DANE = cd
	}
	for k, v := range p.ext {
		h.Extensions = append(h.Extensions, strings.TrimSpace(k+" "+clip(v, 100)))
	}
	slices.Sort(h.Extensions)
	if p.check != nil && p.check.state != nil {
		h.TLS = c.checkTLS(st, *t, p.check)
	}
	_, hasRT := p.ext["REQUIRETLS"]
	h.RequireTLS = hasRT && ar.tls != nil && ar.tls.Verified
	v := Delivered
	if ar.err != nil {
		v = statusFor(ar.err)
	}
	h.Outcome = outcomeOf(v, ar.err, ar.failure, t.host)
	if ar.err == nil {
		h.Outcome.Code, h.Outcome.Status, h.Outcome.Message = 250, "2.0.0", "ready for MAIL FROM (not sent: check)"
	}
	p.rep.Hosts = append(p.rep.Hosts, h)
	// A next address of the same host starts clean.
	*p = checkProbe{rep: p.rep, t: p.t}
}

// checkTLS describes the handshake v saw and checks it against every
// level, with the same check delivery applies at that level.
func (c *Connector) checkTLS(st *groupState, t target, v *tlsCheck) *CheckTLS {
	cs := *v.state
	ti := NewTLSInfo(cs, false) // the names the delivery log uses
	out := &CheckTLS{
		Version: ti.VersionName(), Cipher: ti.CipherName(), ServerName: cs.ServerName,
		Verified: v.err == nil && v.verified, Failure: v.failure, Chain: []CheckCert{},
	}
	if v.err != nil && v.failure == policy.FailureNone {
		out.Failure = policy.FailureValidation
	}
	for _, crt := range cs.PeerCertificates {
		out.Chain = append(out.Chain, certOf(crt))
	}
	minV := st.req.EffectiveMinVersion()
	levels := []struct {
		name string
		v    tlsCheck
	}{
		{"encrypt", tlsCheck{kind: policy.CheckNone, minVersion: minV}},
		{"verify", tlsCheck{kind: policy.CheckVerify, mxHost: t.host, roots: c.RootCAs, now: v.now, minVersion: minV}},
		{"secure", tlsCheck{kind: policy.CheckSecure, match: c.matchNames(st), roots: c.RootCAs, now: v.now, minVersion: minV}},
	}
	if t.dane != nil && len(t.dane.TLSA) > 0 {
		levels = append(levels, struct {
			name string
			v    tlsCheck
		}{"dane", tlsCheck{kind: policy.CheckDANE, dane: t.dane, now: v.now, minVersion: minV}})
	}
	for _, l := range levels {
		lc := l.v
		cl := CheckLevel{Level: l.name, OK: true}
		if err := lc.check(cs); err != nil {
			cl.OK, cl.Failure, cl.Error = false, lc.failure, clip(err.Error(), 300)
		}
		out.Levels = append(out.Levels, cl)
	}
	return out
}

func certOf(c *x509.Certificate) CheckCert {
	cc := CheckCert{Subject: clip(c.Subject.String(), 300), Issuer: clip(c.Issuer.String(), 300),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
	for i, n := range c.DNSNames {
		if i == 20 {
			cc.DNSNames = append(cc.DNSNames, fmt.Sprintf("(%d more)", len(c.DNSNames)-i))
			break
		}
		cc.DNSNames = append(cc.DNSNames, clip(n, 253))
	}
	return cc
}

// clip keeps at most n bytes of s, valid UTF-8, without control
// characters, so that what a remote server says cannot forge lines in a
// report.
func clip(s string, n int) string {
	s = printable(strings.ToValidUTF8(s, "?"))
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// WriteText renders the report for people, in the spirit of Postfix's
// posttls-finger: the policy and why, the MX hosts, then per host the
// plan, the session and each level's verdict on its certificate, and
// last what delivery would do, with the DSN status (RFC 3464 §2.3.4).
func (r *CheckReport) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	line := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p := r.Policy
	line("check %s at %s", r.Domain, r.Time.UTC().Format(time.RFC3339))
	pol := fmt.Sprintf("%s (%s", p.Level, p.Source)
	if p.Reason != "" {
		pol += ": " + p.Reason
	}
	line("  policy:     %s), %s, on failure %s, min %s", pol, p.Mode, p.OnFailure, p.MinTLS)
	if len(p.Published) > 0 {
		line("  published:  %s", strings.Join(p.Published, "; "))
	}
	if len(p.MXPatterns) > 0 {
		line("  mx patterns: %s", strings.Join(p.MXPatterns, " "))
	}
	if len(p.Match) > 0 {
		line("  match:      %s", strings.Join(p.Match, ":"))
	}
	if p.Adjusted != "" {
		line("  adjusted:   %s", p.Adjusted)
	}
	for _, f := range p.DiscoveryFailures {
		line("  discovery:  %s", f)
	}
	switch {
	case r.NextHop != "":
		line("  route:      fixed next hop %s", r.NextHop)
	case r.MX.Null:
		line("  mx:         null MX (RFC 7505): the domain accepts no mail")
	default:
		mx := strings.Join(r.MX.Hosts, ", ")
		if r.MX.Implicit {
			mx += " (implicit MX: no MX records)"
		}
		if mx == "" {
			mx = "none usable"
		}
		line("  mx:         %s; DNSSEC %s", mx, yesNo(r.MX.DNSSEC))
	}
	if len(r.MX.Refused) > 0 {
		line("  refused:    %s (not in the MTA-STS mx patterns)", strings.Join(r.MX.Refused, ", "))
	}
	rt := "possible"
	if !r.RequireTLS.Possible {
		rt = "not possible"
		if r.RequireTLS.Reason != "" {
			rt += ": " + r.RequireTLS.Reason
		}
	}
	line("  requiretls: %s", rt)
	for _, h := range r.Hosts {
		line("")
		line("%s [%s]:%d preference %d", h.Host, h.IP, h.Port, h.Preference)
		line("  requires:   %s", h.Requires)
		if h.Reason != "" {
			line("  because:    %s", h.Reason)
		}
		if h.MXPatternMismatch {
			line("  mx pattern: no match (testing mode: used anyway)")
		}
		if d := h.DANE; d != nil {
			tlsa := strings.Join(d.TLSA, "; ")
			if tlsa == "" {
				tlsa = "no usable TLSA records"
			}
			line("  dane:       %s (%s; addresses DNSSEC %s)", tlsa, d.Level, yesNo(d.DNSSEC))
			if d.Reason != "" {
				line("              %s", d.Reason)
			}
			if d.Error != "" {
				line("              error: %s", d.Error)
			}
		}
		if h.Greeting != "" {
			line("  greeting:   %s", h.Greeting)
			line("  starttls:   %s", map[bool]string{true: "offered", false: "not offered"}[h.STARTTLS])
		}
		if h.PlaintextFallback != "" {
			line("  fallback:   plaintext after a failed handshake: %s", h.PlaintextFallback)
		}
		if t := h.TLS; t != nil {
			v := "not verified"
			if t.Verified {
				v = "verified"
			}
			if t.Failure != policy.FailureNone {
				v += " (" + string(t.Failure) + ")"
			}
			line("  tls:        %s %s, SNI %s, %s", t.Version, t.Cipher, orNone(t.ServerName), v)
			for i, c := range t.Chain {
				line("  cert %d:     %s [%s] issuer %s, valid %s to %s", i, c.Subject, strings.Join(c.DNSNames, " "), c.Issuer,
					c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"))
			}
			var ls []string
			for _, l := range t.Levels {
				s := l.Level + " ok"
				if !l.OK {
					s = l.Level + " FAILS (" + string(l.Failure) + ")"
				}
				ls = append(ls, s)
			}
			line("  levels:     %s", strings.Join(ls, ", "))
		}
		if len(h.Extensions) > 0 {
			line("  extensions: %s", strings.Join(h.Extensions, ", "))
		}
		if h.Greeting != "" {
			line("  requiretls: %s", map[bool]string{true: "advertised over verified TLS", false: "no"}[h.RequireTLS])
		}
		line("  result:     %s", h.Outcome.text())
	}
	line("")
	line("verdict: %s", r.Outcome.text())
	_, err := io.WriteString(w, b.String())
	return err
}

func (o CheckOutcome) text() string {
	s := o.Result.String()
	if o.Result == Delivered && o.Host != "" {
		s += " via " + o.Host
	}
	s += fmt.Sprintf(": %d %s %s", o.Code, o.Status, o.Message)
	if o.TLSFailure != policy.FailureNone {
		s += " [" + string(o.TLSFailure) + "]"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
