package policy

import "fmt"

// Message is what one message asks of TLS on its way (RFC 8689).
type Message struct {
	// RequireTLS: the message was received with the REQUIRETLS MAIL
	// parameter (RFC 8689 §4.1); every hop must verify its next hop.
	RequireTLS bool
	// TLSRequiredNo: the message carries "TLS-Required: No" (RFC 8689 §5),
	// asking that recipient-side policies be ignored.
	TLSRequiredNo bool
}

// Check is what the TLS handshake of one connection must verify.
type Check int

// Checks.
const (
	// CheckNone accepts any certificate (May, Encrypt, TLS-Required: No).
	CheckNone Check = iota
	// CheckVerify: PKIX chain and the MX host name (Postfix "verify").
	CheckVerify
	// CheckSecure: PKIX chain and Requirement.Match or the next-hop
	// domain (Postfix "secure").
	CheckSecure
	// CheckDANE: the host's own TLSA records (RFC 7672 §3).
	CheckDANE
)

var checkNames = [...]string{"none", "verify", "secure", "dane"}

// String returns "none", "verify", "secure" or "dane".
func (c Check) String() string {
	if c >= 0 && int(c) < len(checkNames) {
		return checkNames[c]
	}
	return fmt.Sprintf("check(%d)", int(c))
}

// DANEState is what a DNSSEC-aware lookup found for one MX host (RFC 7672
// §2.2). A dane.Host reports it with its State method.
type DANEState int

// DANE states of a host.
const (
	// DANENotLookedUp: no DNSSEC-aware lookup was made for the host (the
	// sender has no DANE resolver, or the host is a next hop given as an IP
	// literal or on another port than the DANE one).
	DANENotLookedUp DANEState = iota
	// DANENoRecords: no DNSSEC-authenticated TLSA records (an insecure
	// zone, or a secure denial): DANE does not apply to the host.
	DANENoRecords
	// DANEUsable: usable authenticated TLSA records; the certificate must
	// match them (RFC 7672 §2.2).
	DANEUsable
	// DANEUnusable: authenticated TLSA records exist but none is usable:
	// TLS is mandatory, without authentication (RFC 7672 §2.2).
	DANEUnusable
	// DANELookupFailed: a TLSA or address lookup failed (bogus, SERVFAIL,
	// timeout): the host must not be used (RFC 7672 §2.2).
	DANELookupFailed
	// DANEMissing: a dane-only DANE policy found no usable records for the
	// host (the host must not be used).
	DANEMissing
)

var daneStateNames = [...]string{"not looked up", "no records", "usable", "unusable", "lookup failed", "dane-only, none usable"}

// String names s for logs and test tables.
func (s DANEState) String() string {
	if s >= 0 && int(s) < len(daneStateNames) {
		return daneStateNames[s]
	}
	return fmt.Sprintf("dane-state(%d)", int(s))
}

// Host is one MX host (or fixed next hop) as Plan.Host sees it.
type Host struct {
	// Name names the host in reasons and refusals ("mx.example.net", or
	// "[192.0.2.1]:2525").
	Name string
	// DANE is what the DNSSEC-aware lookup found.
	DANE DANEState
	// HasAddrs: the lookup found addresses for the host.
	HasAddrs bool
	// Reason is the DANE lookup's explanation, quoted in Hop.Reason.
	Reason string
}

// Hop is what one connection must satisfy before MAIL FROM is sent.
type Hop struct {
	// TryTLS: send STARTTLS when it is offered.
	TryTLS bool
	// Required: no plaintext; a missing STARTTLS or a failed handshake
	// ends the attempt before any mail is sent.
	Required bool
	// Check is what the handshake verifies.
	Check Check
	// Enforce: a failed Check ends the attempt. False in MTA-STS testing
	// mode (RFC 8461 §5): failures are reported only.
	Enforce bool
	// Reason says why the hop differs from the requirement's level, for
	// logs and reports; empty when it does not.
	Reason string
	// Note is a remark for the log that does not change the hop (a DANE
	// lookup ignored under "TLS-Required: No").
	Note string
}

// RefusalKind says why a plan refuses a destination or a host.
type RefusalKind int

// Refusal kinds.
const (
	// RefuseDANE: DANE is required but cannot be satisfied (no usable
	// records under dane-only, records that cannot be checked per host).
	// Permanent or not as Requirement.OnFailure says.
	RefuseDANE RefusalKind = iota + 1
	// RefuseLookup: the host's DNSSEC lookup failed (RFC 7672 §2.2): a
	// temporary failure; the host is not used.
	RefuseLookup
	// RefuseAddress: under "TLS-Required: No" the DANE lookup is ignored,
	// but the host's addresses could not be found: temporary.
	RefuseAddress
	// RefuseREQUIRETLS: the message requires TLS (RFC 8689 §4.2.1) and the
	// destination or host cannot be authenticated: permanent, 5.7.30.
	RefuseREQUIRETLS
	// RefuseConfig: the requirement names a level this package does not
	// know, a local configuration or programming error: temporary, so
	// that mail waits for the configuration to be mended, and no TLS
	// failure (FailureNone): the destination did nothing wrong, and
	// TLS-RPT does not hear of it.
	RefuseConfig
)

// Refusal is a plan's "do not deliver here", and why. It is an error.
type Refusal struct {
	Kind RefusalKind
	// Failure is the TLS-RPT result type to record (RFC 8460 §4.3.2),
	// FailureNone when the refusal is no TLS failure (RefuseAddress,
	// RefuseREQUIRETLS); dnssec-invalid for RefuseLookup, the type every
	// failed DNSSEC lookup gets (dane.ResultType).
	Failure FailureType
	// Summary is the short text for the DSN ("DANE required but not
	// available"); Detail the longer explanation.
	Summary, Detail string
}

func (r *Refusal) Error() string { return r.Summary + ": " + r.Detail }

// Plan is the TLS plan of one delivery: what every connection to one
// destination must satisfy, for one message. NewPlan builds it from the
// Requirement (what the policies say) and the Message (what the message
// asks); Host adapts it to each MX host's DANE records. It does no I/O:
// the Connector asks it, and the table in the package documentation shows
// its answers.
type Plan struct {
	Requirement Requirement
	Message     Message
	// PerHost: the sender looks up every MX host's TLSA records itself (a
	// DNSSEC-aware resolver is configured), so Host decides DANE per host.
	PerHost bool
	// Relaxed: the message's "TLS-Required: No" is honoured (see
	// NewPlan): recipient-side policies, DANE and MTA-STS "mx:" patterns,
	// are ignored.
	Relaxed bool
	// Group is the hop for a host about which DANE says nothing.
	Group Hop
	// Refused, when set, says the destination cannot be delivered to at
	// all; Group is then meaningless.
	Refused *Refusal
}

// NewPlan returns the plan for msg to req's destination. perHost says that
// the caller will give each host its own DANE decision (Plan.Host); without
// it, a requirement that carries TLSA records cannot be checked host by
// host and is refused (failing closed).
//
// A message with "TLS-Required: No" (RFC 8689 §5) has recipient-side
// policies ignored (RFC 8689 §4.2.2), but never what the local
// administrator configured for the destination:
//
//   - REQUIRETLS wins over the header: it is not honoured.
//   - With a local floor (LocalFloor) of none, may or encrypt, the header
//     is honoured: the level is max(may, floor), encrypt meaning TLS
//     without certificate checks and never plaintext. A requirement of
//     none stays none. The configured default level is relaxed like a
//     published policy, so that TLS-RPT reports (sent with the header,
//     RFC 8460 §5.3) reach domains whose TLS is broken.
//   - With a local floor of dane or stricter the requirement is kept
//     whole: a local verify or secure already demands what the published
//     policy does, and a local DANE level cannot be separated from the
//     DNSSEC records the header would drop.
func NewPlan(req Requirement, msg Message, perHost bool) Plan {
	p := Plan{Requirement: req, Message: msg, PerHost: perHost}
	if to, ok := p.relaxation(); ok {
		p.Relaxed = true
		p.Group = relaxedHop(req, to)
		return p
	}
	p.Group, p.Refused = levelHop(req, perHost)
	if p.Refused == nil && msg.TLSRequiredNo && !msg.RequireTLS {
		// Not honoured: say so, with both levels, so that an operator sees
		// why such a message was held to the full requirement.
		note := fmt.Sprintf("TLS-Required: No header not applied: %s (%s) kept, local floor %s is dane or stricter (RFC 8689)",
			req.Level, req.Source, req.LocalLevel())
		if p.Group.Reason != "" {
			note = p.Group.Reason + "; " + note
		}
		p.Group.Reason = note
	}
	return p
}

// LocalLevel returns what the local administrator configured for r's
// destination: Level itself when the requirement comes from a static
// table entry, a route's own level or an override (in enforce mode), and
// in any case at least LocalFloor. The configured default level does not
// count (see LocalFloor).
func (r Requirement) LocalLevel() Level {
	floor := r.LocalFloor
	switch r.Source {
	case SourceStatic, SourceRoute, SourceOverride:
		if r.Mode == Enforce {
			floor = max(floor, r.Level)
		}
	}
	return floor
}

// relaxation returns the level a "TLS-Required: No" message is delivered
// at, and whether the header is honoured at all (see NewPlan).
func (p Plan) relaxation() (Level, bool) {
	req := p.Requirement
	if !p.Message.TLSRequiredNo || p.Message.RequireTLS {
		return req.Level, false
	}
	floor := req.LocalLevel()
	if floor >= DANE {
		return req.Level, false
	}
	if req.Level == None {
		return None, true
	}
	return max(May, floor), true
}

// relaxedHop is the hop of an honoured "TLS-Required: No" at level to
// (none, may or encrypt). Encrypt is enforced even when req is in testing
// mode: it is the local administrator's requirement.
func relaxedHop(req Requirement, to Level) Hop {
	h := Hop{Enforce: true}
	switch to {
	case None:
	case May:
		h.TryTLS = true
	default:
		h.TryTLS, h.Required = true, true
	}
	if req.Level != to {
		h.Reason = fmt.Sprintf("TLS-Required: No header relaxes %s (%s) to %s, local floor %s (RFC 8689: recipient-side policies ignored, the local requirement kept)",
			req.Level, req.Source, to, req.LocalLevel())
	}
	return h
}

// danePerHostMissing is the refusal of TLSA records that no host can be
// checked against.
func danePerHostMissing(detail string) *Refusal {
	return &Refusal{Kind: RefuseDANE, Failure: FailureValidation, Summary: "DANE required but not available", Detail: detail}
}

// levelHop is the hop for req's level, without regard to the message.
func levelHop(req Requirement, perHost bool) (Hop, *Refusal) {
	h := Hop{Enforce: req.Mode == Enforce}
	switch req.Level {
	case None:
		return h, nil
	case May:
		h.TryTLS = true
		return h, nil
	case Encrypt:
		h.TryTLS, h.Required = true, true
	case DANE:
		if perHost {
			// Host decides; without usable records: may.
			h.TryTLS = true
			return h, nil
		}
		if len(req.TLSA) == 0 {
			// RFC 7672 §2.2: no usable TLSA records: opportunistic TLS.
			h.TryTLS = true
			h.Reason = "dane without TLSA records: may"
			return h, nil
		}
		return h, danePerHostMissing("TLSA records present but no DNSSEC-aware resolver, so no host can be checked against its own records; failing closed")
	case DANEOnly:
		if perHost {
			// Host refuses every host without usable records.
			h.TryTLS, h.Required = true, true
			return h, nil
		}
		if len(req.TLSA) == 0 {
			return h, &Refusal{Kind: RefuseDANE, Failure: FailureDANERequired, Summary: "DANE required but not available",
				Detail: "dane-only and no DNSSEC-validated TLSA records"}
		}
		return h, danePerHostMissing("TLSA records present but no DNSSEC-aware resolver, so no host can be checked against its own records; failing closed")
	case Verify:
		h.TryTLS, h.Required, h.Check = true, true, CheckVerify
	case Secure:
		h.TryTLS, h.Required, h.Check = true, true, CheckSecure
	default:
		return h, &Refusal{Kind: RefuseConfig, Failure: FailureNone, Summary: "unknown TLS level",
			Detail: fmt.Sprintf("unknown TLS level %v", req.Level)}
	}
	if !h.Enforce {
		// MTA-STS testing mode (RFC 8461 §5): check and report, never block,
		// but keep the enforced floor's TLS requirement (Requirement.Floor).
		if req.Floor == DANEOnly && !perHost {
			// "DANE or nothing" cannot be met without per-host TLSA checks.
			return h, danePerHostMissing("dane-only floor under a testing policy, but no DNSSEC-aware resolver; failing closed")
		}
		h.Required = req.Floor.RequiresTLS()
		h.Reason = "testing mode: failures reported, not enforced"
		if h.Required {
			h.Reason += "; TLS still required by " + req.Floor.String()
		}
	}
	return h, nil
}

// daneApplies reports whether DANE, where a host has usable TLSA records,
// takes over from the requirement: not under an explicit override, nor
// under a static (or default or route) verify or secure, which outranks
// DANE as an explicit level does in Postfix, also when an equal published
// policy won the tie (LocalLevel); always over MTA-STS (RFC 8461 §2); and
// over any weaker level, which it raises (RFC 7672 §2.2).
func (p Plan) daneApplies() bool {
	req := p.Requirement
	if req.Source == SourceOverride || req.LocalLevel().VerifiesPKIX() {
		return false
	}
	if req.Source == SourceMTASTS {
		return true
	}
	return !req.Level.VerifiesPKIX()
}

// daneOnly reports whether the requirement is "DANE or nothing": a
// dane-only level, or a dane-only floor under a testing policy.
func (p Plan) daneOnly() bool {
	req := p.Requirement
	return req.Level == DANEOnly || req.Mode == Testing && req.Floor == DANEOnly
}

// UsesDANE reports whether a host in state s is verified by DANE alone,
// and so is not subject to MTA-STS "mx:" patterns (RFC 8461 §2: DANE takes
// precedence where it applies).
func (p Plan) UsesDANE(s DANEState) bool {
	return s == DANEUsable && p.daneApplies() && !p.Relaxed
}

// AllowsMX applies MTA-STS "mx:" patterns (RFC 8461 §4.1) to host: use
// says whether it may be used, mismatch that it matches none of them and
// is used because the policy is in testing mode (RFC 8461 §5; the session
// is reported as a failure). "TLS-Required: No" (RFC 8689 §4.2.2) ignores
// the patterns.
func (p Plan) AllowsMX(host string) (use, mismatch bool) {
	switch {
	case p.Requirement.AllowsMX(host), p.Relaxed:
		return true, false
	case p.Requirement.Mode == Enforce:
		return false, false
	}
	return true, true
}

// Host returns the hop for one host, adapting Group to what DANE found
// for it (RFC 7672 §2.2): usable TLSA records make TLS mandatory and the
// certificate is checked against that host's records only; only unusable
// records make TLS mandatory without authentication; no records leave
// Group (dane: may). A host whose lookups failed, or that has no usable
// records where DANE is required, is refused. For a REQUIRETLS message,
// a host whose certificate would not be verified is refused (RFC 8689
// §4.2.1).
func (p Plan) Host(h Host) (Hop, *Refusal) {
	hop, r := p.host(h)
	if r == nil && p.Message.RequireTLS && hop.Check == CheckNone {
		r = &Refusal{Kind: RefuseREQUIRETLS, Summary: "REQUIRETLS support required",
			Detail: h.Name + " would not be authenticated"}
	}
	return hop, r
}

func (p Plan) host(h Host) (Hop, *Refusal) {
	g := p.Group
	req := p.Requirement
	daneRequired := func(detail string) (Hop, *Refusal) {
		return g, &Refusal{Kind: RefuseDANE, Failure: FailureDANERequired, Summary: "DANE required but " + h.Name + " has no usable TLSA records", Detail: detail}
	}
	if h.DANE == DANENotLookedUp {
		// With per-host lookups, only a fixed next hop given as an IP
		// literal or on another port: fail closed where the requirement
		// needs DANE (dane-only never falls back, and TLSA records handed
		// over by the policy cannot be checked here).
		if !p.PerHost || p.Relaxed {
			return g, nil
		}
		switch {
		case p.daneOnly():
			return g, &Refusal{Kind: RefuseDANE, Failure: FailureDANERequired, Summary: "dane-only but DANE is not looked up for " + h.Name,
				Detail: "no TLSA lookup for an IP literal or a port other than the DANE port"}
		case req.Level == DANE && len(req.TLSA) > 0:
			return g, &Refusal{Kind: RefuseDANE, Failure: FailureDANERequired, Summary: "TLSA records cannot be checked for " + h.Name,
				Detail: "TLSA records from the policy, but DANE is not looked up for this next hop; failing closed"}
		case req.Level == DANE && req.WithoutTLSA.VerifiesPKIX():
			return Hop{TryTLS: true, Required: true, Check: CheckVerify, Enforce: true,
				Reason: "no TLSA lookup for this next hop: held to the mta-sts policy"}, nil
		}
		return g, nil
	}
	if p.Relaxed {
		// RFC 8689 §4.2.2: recipient-side policies such as DANE are ignored.
		failed := h.DANE == DANELookupFailed || h.DANE == DANEMissing
		if failed && !h.HasAddrs {
			return g, &Refusal{Kind: RefuseAddress, Summary: "address lookup for " + h.Name + " failed"}
		}
		if failed || h.DANE == DANEUsable {
			g.Note = "TLS-Required: No header: DANE not applied (RFC 8689 §4.2.2)"
		}
		return g, nil
	}
	switch {
	case h.DANE == DANELookupFailed:
		// RFC 7672 §2.2: a failed TLSA or address lookup makes the host
		// unusable; the message is deferred, never sent with less.
		return g, &Refusal{Kind: RefuseLookup, Failure: FailureDNSSECInvalid, Summary: "DNSSEC lookup for " + h.Name + " failed; not using this host"}
	case !p.daneApplies():
		// An override or an explicit verify/secure decides.
		return g, nil
	case h.DANE == DANEMissing:
		return daneRequired("")
	case h.DANE == DANEUsable:
		return Hop{TryTLS: true, Required: true, Check: CheckDANE, Enforce: true, Reason: "dane: " + h.Reason}, nil
	case p.daneOnly():
		// A dane-only level whose DANE lookup falls back, or a dane-only
		// floor under a testing policy.
		return daneRequired(h.Name + ": " + h.Reason)
	case req.Level == DANE && req.WithoutTLSA.VerifiesPKIX():
		// DANE took precedence over an enforced MTA-STS policy, which still
		// governs this host: PKIX chain and MX host name.
		return Hop{TryTLS: true, Required: true, Check: CheckVerify, Enforce: true,
			Reason: "no usable TLSA records: held to the mta-sts policy"}, nil
	case req.Level == DANE && req.WithoutTLSA == Encrypt:
		// DANE outranked an enforced encrypt, which still governs this host.
		return Hop{TryTLS: true, Required: true, Enforce: true,
			Reason: "no usable TLSA records: encrypt still required"}, nil
	case h.DANE == DANEUnusable && !g.Required:
		// RFC 7672 §2.2: only unusable records: TLS without authentication.
		// A testing-mode check, if any, stays reported only.
		g.TryTLS, g.Required = true, true
		g.Reason = "dane: " + h.Reason
		return g, nil
	}
	return g, nil
}

// CheckRequireTLS says whether the destination can carry a REQUIRETLS
// message at all, before any connection (RFC 8689 §4.2.1); Host checks
// each host. It returns nil when the message does not ask for REQUIRETLS.
//
// RFC 8689 §4.2.1 asks that the MX lookup be DNSSEC-validated or confirmed
// by an MTA-STS policy in enforce mode (mxDNSSEC: the MX RRset was
// validated; Requirement.MXAuthenticated in enforce mode), and that the
// server's certificate be verified (PKIX with the MX host name, or DANE
// for at least one of hosts). Secure is refused like Verify unless the MX
// set is authenticated: §4.2.1 makes the authenticated MX lookup a
// requirement of its own. A fixed next hop from local configuration
// (fixedHop, a smarthost route) involves no MX lookup.
func (p Plan) CheckRequireTLS(mxDNSSEC, fixedHop bool, hosts []DANEState) *Refusal {
	if !p.Message.RequireTLS {
		return nil
	}
	req := p.Requirement
	refuse := func(detail string) *Refusal {
		return &Refusal{Kind: RefuseREQUIRETLS, Summary: "REQUIRETLS support required", Detail: detail}
	}
	if req.Mode != Enforce {
		return refuse(fmt.Sprintf("policy %s is in testing mode", req.Source))
	}
	daneVerifies := false
	for _, s := range hosts {
		daneVerifies = daneVerifies || (s == DANEUsable && p.daneApplies())
	}
	if !req.Level.VerifiesPKIX() && !daneVerifies {
		return refuse(fmt.Sprintf("level %s does not verify the server certificate", req.Level))
	}
	if !fixedHop && !mxDNSSEC && !req.MXAuthenticated {
		return refuse("MX host names are not authenticated by DNSSEC or an enforced MTA-STS policy")
	}
	return nil
}

// String describes what the hop requires, in words ("tls required;
// verify: PKIX chain and MX host name").
func (h Hop) String() string {
	var w string
	switch {
	case !h.TryTLS:
		return "plaintext (no STARTTLS)"
	case h.Required:
		w = "tls required"
	default:
		w = "tls if offered, plaintext allowed"
	}
	switch h.Check {
	case CheckVerify:
		w += "; verify: PKIX chain and MX host name"
	case CheckSecure:
		w += "; secure: PKIX chain and the match names (default: the next-hop domain)"
	case CheckDANE:
		w += "; dane: certificate matches the host's TLSA records"
	default:
		w += "; certificate not checked"
	}
	if !h.Enforce && h.Check != CheckNone {
		w += " (testing: reported, not enforced)"
	}
	return w
}
