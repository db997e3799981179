package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Standard is the composition of published and local policies that an MTA
// on the internet wants, in one value: DANE (RFC 7672), MTA-STS (RFC 8461),
// the administrator's static table and a default level. Use it as a
// Connector's Policy:
//
//	p := &policy.Standard{Static: table, MTASTS: stsClient, DANE: danePolicy,
//		Default: policy.Fixed{Level: policy.May}, Logger: log}
//
// Its Lookup returns one Requirement per destination, built as Strictest
// does (strictest wins, nobody weakens anybody, override=yes entries win
// and are logged) with these rules of precedence on top:
//
//   - DANE over MTA-STS: when the DANE lookup finds DNSSEC-authenticated
//     usable TLSA records, MTA-STS answers, enforced or testing, take no part
//     (RFC 8461 §2: MTA-STS must not override a failing DANE validation).
//     An enforced MTA-STS policy still governs the MX hosts that have no
//     usable TLSA records: the DANE result carries it in WithoutTLSA,
//     MXPatterns and PolicyString.
//     A DANE answer without records (level May: DANE does not apply)
//     abstains; "only unusable records" (Encrypt) and dane-only without
//     records (DANEOnly) compete.
//   - The static table can raise a published policy but not silently lower
//     it: a weaker static entry loses, unless it says override=yes, which
//     wins and is logged (at Warn level when it lowers). A static Verify or
//     Secure entry outranks DANE, as an explicit level does in Postfix.
//   - The default level competes as a floor, like a static entry.
//   - A testing-mode policy (RFC 8461 §5) stricter than the enforced result
//     is not ignored: the result is that policy in Testing mode, with Floor
//     set to the enforced result's level, so that the Connector checks and
//     reports it (TLS-RPT) while still enforcing the floor (say Encrypt).
//     A dane-only result is kept as it is (Floor cannot express "DANE or
//     nothing"); the testing policy is only named in Reason.
//   - Ties between equally strict answers go to DANE, then MTA-STS, then the
//     static table, then the default, so that a published policy that is
//     matched by a local entry is still reported as applied.
//   - The static table's level survives in LocalFloor when a published
//     policy or the default wins (also when a testing-mode policy is the
//     result), as with Strictest: a "TLS-Required: No" message (RFC 8689)
//     has recipient-side policies ignored but is never relaxed below the
//     administrator's entry. The default level is no local floor; see
//     Requirement.LocalFloor.
//
// Discovery failures are collected as Strictest does: when the domain
// publishes an MTA-STS policy that cannot be fetched or is invalid (the
// MTA-STS member abstains with a DiscoveryError), or a cached policy is
// applied because its refresh failed, the result's DiscoveryFailures say
// so, for TLS-RPT (RFC 8460 §4.3.2.2), and Reason names them. Delivery is
// decided by the other answers as if the domain published no policy
// (RFC 8461 §5).
//
// Any member error other than ErrNoPolicy is returned (wrapped): the caller
// must defer, never downgrade. The result's String explains the decision in
// one line, naming every answer and why it won or lost.
//
// The zero Standard answers Verify for every domain (source default), as a
// Connector without Policy does. Standard is safe for concurrent use if
// its members are; do not modify it while lookups run.
type Standard struct {
	// Static is the administrator's table (a *Table), nil for none.
	Static Policy
	// MTASTS is the MTA-STS lookup (an *mtasts.Client), nil to disable.
	MTASTS Policy
	// DANE is the DANE lookup (a *dane.Policy), nil to disable. A
	// Connector with this Standard as its Policy verifies each MX host
	// against that host's own records through the same lookup
	// (DANEMember).
	DANE Policy
	// Default is the level for destinations nothing else covers, and the
	// floor for all others. Nil means Fixed{Level: Verify}; most internet
	// MTAs want Fixed{Level: May} (Postfix's smtp_tls_security_level).
	Default Policy
	// Logger receives one line per applied override. Nil discards.
	Logger *slog.Logger
}

var _ Policy = (*Standard)(nil)

// DANEMember is implemented by a Policy that composes a DANE lookup
// (Standard, Outbound). A transport.Connector whose own DANE field is nil
// takes that lookup (when it is a *dane.Policy) to check each MX host
// against its own TLSA records (RFC 7672 §2.2), so that DANE is
// configured once and the decision and the per-host checks cannot
// disagree.
type DANEMember interface {
	// DANEMember returns the DANE member, nil if there is none.
	DANEMember() Policy
}

// DANEMember returns s.DANE. It implements the DANEMember interface.
func (s *Standard) DANEMember() Policy { return s.DANE }

// Lookup composes the members' answers for domain as described on
// Standard. A next hop "[host]:port" is no domain to ask DANE or MTA-STS
// about: it gets LookupLocal.
func (s *Standard) Lookup(ctx context.Context, domain string) (Requirement, error) {
	if strings.HasPrefix(domain, "[") {
		return s.LookupLocal(ctx, domain)
	}
	def := s.Default
	if def == nil {
		def = Fixed{Level: Verify}
	}
	members := []struct {
		p    Policy
		name string
	}{{s.DANE, "dane"}, {s.MTASTS, "mta-sts"}, {s.Static, "static"}, {def, "default"}}
	var answers []Requirement
	// Discovery failures of every member, collected before any answer is
	// set aside (an MTA-STS testing answer under DANE, say).
	var failures []DiscoveryFailure
	var notes []string
	for _, m := range members {
		if m.p == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return Requirement{}, err
		}
		r, err := m.p.Lookup(ctx, domain)
		if errors.Is(err, ErrNoPolicy) {
			failures = appendFailures(failures, DiscoveryFailuresOf(err)...)
			continue
		}
		if err != nil {
			return Requirement{}, fmt.Errorf("policy: %s lookup of %q: %w", m.name, domain, err)
		}
		failures = appendFailures(failures, r.DiscoveryFailures...)
		if r.Source == SourceDANE && r.Level == May && len(r.TLSA) == 0 {
			// DANE does not apply (no authenticated records): no opinion.
			notes = append(notes, "dane does not apply: "+r.Reason)
			continue
		}
		answers = append(answers, r)
	}
	if len(answers) == 0 {
		r := Requirement{Domain: domain, Level: Verify, Source: SourceDefault, Reason: "no policy answered: strict default",
			DiscoveryFailures: failures}
		r.Reason += discoveryNotes(r.DiscoveryFailures)
		return r, nil
	}
	if slices.ContainsFunc(answers, func(a Requirement) bool { return hasDANERecords(a) && a.Mode == Enforce }) {
		// RFC 8461 §2. Strictest drops enforced MTA-STS answers itself;
		// testing ones must go too, or they would be checked instead.
		answers = slices.DeleteFunc(answers, func(a Requirement) bool {
			if a.Source == SourceMTASTS && a.Mode == Testing {
				notes = append(notes, "mta-sts testing policy yields to DANE (RFC 8461 §2)")
				return true
			}
			return false
		})
	}
	// The enforced MTA-STS answer that yields to DANE, if any: it still
	// governs the MX hosts DANE does not cover (see WithoutTLSA).
	var yielded *Requirement
	if slices.ContainsFunc(answers, func(a Requirement) bool { return hasDANERecords(a) && a.Mode == Enforce }) {
		for i := range answers {
			if answers[i].Source == SourceMTASTS && answers[i].Mode == Enforce {
				yielded = &answers[i]
				break
			}
		}
	}
	r, lowered := merge(answers)
	if yielded != nil && r.Source == SourceDANE && hasDANERecords(r) {
		r.WithoutTLSA = yielded.Level
		r.MXPatterns = slices.Clone(yielded.MXPatterns)
		r.PolicyString = slices.Clone(yielded.PolicyString)
		r.Reason += "; MX hosts without usable TLSA records are held to the mta-sts policy"
	}
	if r.Source == SourceOverride && len(answers) > 1 && s.Logger != nil {
		lvl := slog.LevelInfo
		if lowered {
			lvl = slog.LevelWarn
		}
		s.Logger.LogAttrs(ctx, lvl, "policy: local override applied",
			slog.String("domain", r.Domain), slog.String("policy", r.Level.String()),
			slog.Bool("lowered", lowered), slog.String("reason", r.Reason))
	}
	// A dane-only result is never replaced by a testing policy: Floor can
	// only carry "TLS required", and the Connector would then hold MX hosts
	// without usable TLSA records to unauthenticated TLS (which an active
	// attacker passes with any certificate) instead of refusing them.
	if r.Mode == Enforce && r.Source != SourceOverride && r.Level != DANEOnly {
		if t, ok := strictestTesting(answers); ok && stricter(t, r) {
			enforced := r
			r = t
			r.Match = slices.Clone(t.Match)
			r.TLSA = slices.Clone(t.TLSA)
			r.MXPatterns = slices.Clone(t.MXPatterns)
			r.PolicyString = slices.Clone(t.PolicyString)
			r.Floor = enforced.Level
			// The enforced result's local part stays the local floor.
			r.LocalFloor = localFloor(answers)
			r.MinVersion = max(r.MinVersion, enforced.MinVersion)
			r.Reason = fmt.Sprintf("%s; testing mode: checked and reported, not enforced; %s %s enforced meanwhile (%s)",
				t.Reason, enforced.Source, enforced.Level, enforced.Reason)
		}
	}
	for _, n := range notes {
		r.Reason += "; " + n
	}
	// Every failure is kept, also those of answers that lost, yielded or
	// were set aside (a cached MTA-STS policy whose refresh failed, under
	// DANE).
	r.DiscoveryFailures = failures
	r.Reason += discoveryNotes(r.DiscoveryFailures)
	return r, nil
}

// LookupLocal returns what the local members alone, Static and Default,
// require of domain, composed as Lookup composes them (the default level
// competes as a floor; ties go to the static table), without asking DANE
// or MTA-STS. It implements LocalPolicy; the key may be a next hop,
// "[host]:port", which published policies know nothing about.
func (s *Standard) LookupLocal(ctx context.Context, domain string) (Requirement, error) {
	def := s.Default
	if def == nil {
		def = Fixed{Level: Verify}
	}
	return (&Strictest{Policies: []Policy{s.Static, def}, Logger: s.Logger}).LookupLocal(ctx, domain)
}

// discoveryNotes explains fs for Reason: "; sts policy discovery failed:
// sts-policy-fetch-error (reported)".
func discoveryNotes(fs []DiscoveryFailure) string {
	var s string
	for _, f := range fs {
		s += fmt.Sprintf("; %s policy discovery failed: %s", f.PolicyType, f.ResultType)
		if len(f.PolicyString) > 0 {
			s += ", cached policy kept"
		}
		s += " (reported)"
	}
	return s
}

// strictestTesting returns the strictest testing-mode answer that is not an
// override.
func strictestTesting(answers []Requirement) (Requirement, bool) {
	var best Requirement
	found := false
	for _, a := range answers {
		if a.Mode != Testing || a.Source == SourceOverride {
			continue
		}
		if !found || stricter(a, best) {
			best, found = a, true
		}
	}
	return best, found
}
