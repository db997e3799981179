package policy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Strength ranks r for "strictest wins": None 0, May 1, DANE without TLSA
// records 2 (it falls back to May, RFC 7672 §2.2, so it ranks below
// Encrypt), Encrypt 3, DANE with TLSA records 4, DANEOnly 5, Verify 6,
// Secure 7. An invalid Level ranks -1.
func (r Requirement) Strength() int {
	switch r.Level {
	case None:
		return 0
	case May:
		return 1
	case DANE:
		if len(r.TLSA) == 0 {
			return 2
		}
		return 4
	case Encrypt:
		return 3
	case DANEOnly:
		return 5
	case Verify:
		return 6
	case Secure:
		return 7
	}
	return -1
}

// DiscoveryFailure is a published policy that could not be discovered, as
// TLS-RPT reports it (RFC 8460 §4.3.2): the domain announced a policy (an
// MTA-STS TXT record, RFC 8461 §3.1) but fetching or validating it failed.
// It is plain data.
type DiscoveryFailure struct {
	// PolicyType is the TLS-RPT "policy-type" the failure is reported under
	// (RFC 8460 §4.3): "sts" for MTA-STS.
	PolicyType string
	// ResultType is the RFC 8460 §4.3.2.2 "result-type":
	// "sts-policy-fetch-error", "sts-policy-invalid" or
	// "sts-webpki-invalid".
	ResultType FailureType
	// Detail says what failed, in words, for TLS-RPT's
	// "failure-reason-code" (RFC 8460 §4.3: "a TLS-related error code or
	// error message"). It may be empty.
	Detail string
	// PolicyString and MXPatterns are the policy applied despite the
	// failure: a valid cached MTA-STS policy kept because its refresh
	// failed (RFC 8461 §5.1), its text line by line and its mx patterns,
	// so that the failure is reported under the policy in use (RFC 8460
	// §4.3 "policy-string", "mx-host"). Nil when no policy was applied.
	PolicyString []string
	MXPatterns   []string
}

// DiscoveryError is implemented by Lookup errors that say why a published
// policy could not be used, such as *mtasts.NoPolicyError. Such an error
// usually also matches ErrNoPolicy: the member abstains, and Strictest and
// Standard carry the failure in Requirement.DiscoveryFailures. TLSRPTResult
// returns the TLS-RPT policy type ("sts") and the RFC 8460 §4.3.2 result
// type; an empty result type means there is nothing to report (the domain
// publishes no policy, or withdrew it).
type DiscoveryError interface {
	error
	TLSRPTResult() (policyType string, resultType FailureType)
}

// DiscoveryFailuresOf returns the discovery failures reported by the
// errors in err's tree (errors.Unwrap, and the Unwrap() []error of joined
// errors) that implement DiscoveryError with a non-empty result type, in
// tree order. Detail is the error's text. The tree below a reporting error
// is not searched further. Nil if there are none.
func DiscoveryFailuresOf(err error) []DiscoveryFailure {
	var out []DiscoveryFailure
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if de, ok := e.(DiscoveryError); ok {
			if pt, rt := de.TLSRPTResult(); rt != "" {
				out = appendFailures(out, DiscoveryFailure{PolicyType: pt, ResultType: rt, Detail: de.Error()})
				return
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

// appendFailures appends to dst each of fs not already in it (copies, so
// that results share no slices with answers).
func appendFailures(dst []DiscoveryFailure, fs ...DiscoveryFailure) []DiscoveryFailure {
	for _, f := range fs {
		if slices.ContainsFunc(dst, func(d DiscoveryFailure) bool { return sameFailure(d, f) }) {
			continue
		}
		f.PolicyString = slices.Clone(f.PolicyString)
		f.MXPatterns = slices.Clone(f.MXPatterns)
		dst = append(dst, f)
	}
	return dst
}

func sameFailure(a, b DiscoveryFailure) bool {
	return a.PolicyType == b.PolicyType && a.ResultType == b.ResultType && a.Detail == b.Detail &&
		slices.Equal(a.PolicyString, b.PolicyString) && slices.Equal(a.MXPatterns, b.MXPatterns)
}

// discoveryFailures collects the failures of the members that abstained
// (their errors, in abstained) and of those that answered, without
// duplicates.
func discoveryFailures(abstained []error, answers []Requirement) []DiscoveryFailure {
	var out []DiscoveryFailure
	for _, err := range abstained {
		out = appendFailures(out, DiscoveryFailuresOf(err)...)
	}
	for _, a := range answers {
		out = appendFailures(out, a.DiscoveryFailures...)
	}
	return out
}

// abstainedError is Strictest's error when no member answered: it matches
// ErrNoPolicy and wraps the members' errors, so that DiscoveryFailuresOf
// finds the failures they report.
type abstainedError struct {
	domain  string
	members []error
}

func (e *abstainedError) Error() string {
	return fmt.Sprintf("%v: no member has a policy for %q", ErrNoPolicy, e.domain)
}

func (e *abstainedError) Unwrap() []error { return append([]error{ErrNoPolicy}, e.members...) }

// Strictest is a Policy that asks each of its Policies, in order, and returns
// the strictest requirement, so that no member can weaken another:
//
//   - A member whose error wraps ErrNoPolicy abstains. Any other error (and
//     a cancelled ctx) is returned at once, wrapped: the destination's policy
//     is unknown, and callers must defer, never downgrade. If every member
//     abstains (or there are none) the error wraps ErrNoPolicy, and the
//     members' errors, so that DiscoveryFailuresOf finds what they report.
//   - Discovery failures (DiscoveryError) of abstaining members and the
//     DiscoveryFailures of every answer, winning or not, are collected in
//     the result's DiscoveryFailures (without duplicates): a broken MTA-STS
//     policy host is reported (RFC 8460 §4.3.2.2) whoever decides.
//   - Answers with Source SourceOverride (a static entry marked
//     override=yes) win over all others, even when they are weaker: this is
//     the only way to lower a requirement. If several overrides answer, the
//     strictest of them wins. An override that lowers a stricter answer is
//     logged at Warn level, any other at Info.
//   - Otherwise the answers in Enforce mode compete; answers in Testing mode
//     are ignored (a testing policy never raises an enforced one) and only
//     named in Reason. If every answer is in Testing mode, they compete
//     among themselves and the result is in Testing mode.
//   - When an enforced answer is DANE or DANEOnly with TLSA records
//     (DNSSEC-validated, so DANE applies), MTA-STS answers do not compete:
//     RFC 8461 §2 says MTA-STS validation must not override a failing DANE
//     validation, and a Verify answer from MTA-STS would otherwise outrank
//     the DANE one and drop its TLSA records. Static answers still compete.
//     If the DANE answer wins, the first enforced MTA-STS answer that
//     yielded still governs the MX hosts without usable TLSA records: its
//     level goes to WithoutTLSA and its MXPatterns and PolicyString come
//     with it (as with Standard). Failing that, an enforced encrypt answer
//     that DANE outranked makes WithoutTLSA encrypt.
//   - Among the competitors the winner has the highest Strength; ties go to
//     the higher effective MinVersion, then to Bounce over Defer, then to
//     the earlier member. The result is the winner's requirement (Level,
//     Match, TLSA, Mode, Source) with the other competitors' constraints
//     added: MinVersion is the highest of all, OnFailure is Bounce if any
//     says Bounce, MXPatterns are the winner's or else the first non-empty
//     ones (with their PolicyString), MXAuthenticated is true if any says so, and a DANE or DANEOnly
//     winner without TLSA records (a static "dane-only" entry) takes those
//     of the first competitor that has them (the DANE lookup).
//   - When the winner is not a local answer (its Source is mta-sts, dane
//     or default) and no override answered, LocalFloor is the strictest
//     level of the enforced local answers (static, route; with the
//     LocalFloor of nested combinations), so that a "TLS-Required: No"
//     message (RFC 8689), which may only have recipient-side policies
//     ignored, is never relaxed below what the administrator configured
//     for the destination. Otherwise LocalFloor is None: a local winner's
//     Level is itself the local requirement, and an override is the
//     administrator's last word.
//   - Reason is the winner's reason, followed, when more than one member
//     answered, by every answer's source and level.
//
// Apart from that one rule of RFC 8461 §2, Strictest ranks by Strength:
// a static Verify or Secure entry outranks DANE, as the administrator's
// explicit level does in Postfix.
//
// Strictest is safe for concurrent use if its members are; do not modify
// Policies while lookups run.
type Strictest struct {
	// Policies are the members, asked in order. Nil members are skipped.
	Policies []Policy
	// Logger receives one line per applied override. Nil discards.
	Logger *slog.Logger
}

var _ Policy = (*Strictest)(nil)

// Combine returns a Strictest over policies, with no logger.
func Combine(policies ...Policy) *Strictest {
	return &Strictest{Policies: policies}
}

// Lookup asks every member for domain and merges the answers as described on
// Strictest.
func (s *Strictest) Lookup(ctx context.Context, domain string) (Requirement, error) {
	return s.lookup(ctx, domain, func(p Policy) (Requirement, error) { return p.Lookup(ctx, domain) })
}

// LookupLocal is Lookup with every member asked through LookupLocal (the
// package function): the local configuration's answer, without published
// policies. It implements LocalPolicy.
func (s *Strictest) LookupLocal(ctx context.Context, domain string) (Requirement, error) {
	return s.lookup(ctx, domain, func(p Policy) (Requirement, error) { return LookupLocal(ctx, p, domain) })
}

// lookup asks every member with ask and merges the answers.
func (s *Strictest) lookup(ctx context.Context, domain string, ask func(Policy) (Requirement, error)) (Requirement, error) {
	var answers []Requirement
	var abstained []error
	for i, p := range s.Policies {
		if p == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return Requirement{}, err
		}
		r, err := ask(p)
		if errors.Is(err, ErrNoPolicy) {
			abstained = append(abstained, err)
			continue
		}
		if err != nil {
			return Requirement{}, fmt.Errorf("policy: lookup of %q, member %d: %w", domain, i, err)
		}
		answers = append(answers, r)
	}
	if len(answers) == 0 {
		return Requirement{}, &abstainedError{domain: domain, members: abstained}
	}
	r, lowered := merge(answers)
	r.DiscoveryFailures = discoveryFailures(abstained, answers)
	if over := r.Source == SourceOverride && len(answers) > 1; over && s.Logger != nil {
		lvl := slog.LevelInfo
		if lowered {
			lvl = slog.LevelWarn
		}
		s.Logger.LogAttrs(ctx, lvl, "policy: local override applied",
			slog.String("domain", r.Domain), slog.String("policy", r.Level.String()),
			slog.Bool("lowered", lowered), slog.String("reason", r.Reason))
	}
	return r, nil
}

// stricter reports whether a beats b (see Strictest).
func stricter(a, b Requirement) bool {
	if sa, sb := a.Strength(), b.Strength(); sa != sb {
		return sa > sb
	}
	if va, vb := a.EffectiveMinVersion(), b.EffectiveMinVersion(); va != vb {
		return va > vb
	}
	return a.OnFailure == Bounce && b.OnFailure != Bounce
}

// merge combines answers (at least one) as described on Strictest. lowered
// reports whether an override won over a stricter non-override answer.
func merge(answers []Requirement) (r Requirement, lowered bool) {
	var overrides, enforce, testing []int
	for i, a := range answers {
		switch {
		case a.Source == SourceOverride:
			overrides = append(overrides, i)
		case a.Mode == Testing:
			testing = append(testing, i)
		default:
			enforce = append(enforce, i)
		}
	}
	// RFC 8461 §2: where DANE applies, MTA-STS does not compete.
	var yielded map[int]bool
	if slices.ContainsFunc(enforce, func(i int) bool { return hasDANERecords(answers[i]) }) {
		enforce = slices.DeleteFunc(enforce, func(i int) bool {
			if answers[i].Source != SourceMTASTS {
				return false
			}
			if yielded == nil {
				yielded = map[int]bool{}
			}
			yielded[i] = true
			return true
		})
	}
	pool := enforce
	switch {
	case len(overrides) > 0:
		pool = overrides
	case len(enforce) == 0:
		pool = testing
	}
	win := pool[0]
	for _, i := range pool[1:] {
		if stricter(answers[i], answers[win]) {
			win = i
		}
	}
	r = answers[win]
	r.Match = slices.Clone(r.Match)
	r.TLSA = slices.Clone(r.TLSA)
	r.MXPatterns = slices.Clone(r.MXPatterns)
	r.PolicyString = slices.Clone(r.PolicyString)
	for _, i := range pool {
		a := answers[i]
		r.MinVersion = max(r.MinVersion, a.MinVersion)
		if a.OnFailure == Bounce {
			r.OnFailure = Bounce
		}
		if len(r.MXPatterns) == 0 && len(a.MXPatterns) > 0 {
			r.MXPatterns = slices.Clone(a.MXPatterns)
			if len(r.PolicyString) == 0 {
				// The policy the patterns come from (MTA-STS), for TLS-RPT.
				r.PolicyString = slices.Clone(a.PolicyString)
			}
		}
		r.MXAuthenticated = r.MXAuthenticated || a.MXAuthenticated
		if (r.Level == DANE || r.Level == DANEOnly) && len(r.TLSA) == 0 && hasDANERecords(a) {
			r.TLSA = slices.Clone(a.TLSA)
		}
	}
	// RFC 8461 §2 gives DANE precedence only where DANE applies: MX hosts
	// without usable TLSA records stay under the enforced MTA-STS policy
	// that yielded (the Connector reads WithoutTLSA), or a DANE level that
	// falls back to May would let an attacker who blocks the DANE-protected
	// hosts push delivery to the others in plaintext.
	if r.Source == SourceDANE && hasDANERecords(r) && r.WithoutTLSA == None {
		for i, a := range answers {
			if yielded[i] {
				r.WithoutTLSA = a.Level
				r.MXPatterns = slices.Clone(a.MXPatterns)
				r.PolicyString = slices.Clone(a.PolicyString)
				r.MXAuthenticated = r.MXAuthenticated || a.MXAuthenticated
				break
			}
		}
	}
	// Likewise an enforced encrypt that DANE outranked (a static entry, a
	// route, the default level): a host without usable records must still
	// not get the message in plaintext.
	if r.Source == SourceDANE && hasDANERecords(r) && r.WithoutTLSA < Encrypt {
		for _, i := range enforce {
			if i != win && answers[i].Level == Encrypt {
				r.WithoutTLSA = Encrypt
			}
		}
	}
	r.LocalFloor = None
	if len(overrides) == 0 && !isLocal(r.Source) {
		r.LocalFloor = localFloor(answers)
	}
	if len(overrides) > 0 {
		for _, i := range enforce {
			if stricter(answers[i], r) {
				lowered = true
			}
		}
	}
	if len(answers) > 1 {
		inPool := make(map[int]bool, len(pool))
		for _, i := range pool {
			inPool[i] = true
		}
		var b strings.Builder
		b.WriteString(r.Reason)
		b.WriteString("; strictest of ")
		for i, a := range answers {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %s", a.Source, a.Level)
			if a.MinVersion > tls.VersionTLS12 {
				fmt.Fprintf(&b, " min %s", tls.VersionName(a.MinVersion))
			}
			switch {
			case i == win:
				b.WriteString(" (chosen)")
			case inPool[i]:
			case len(overrides) > 0:
				b.WriteString(" (overridden)")
			case yielded[i]:
				b.WriteString(" (DANE takes precedence, RFC 8461 §2)")
			case a.Mode == Testing:
				b.WriteString(" (testing, not enforced)")
			}
		}
		r.Reason = b.String()
	}
	return r, lowered
}

// hasDANERecords reports whether a is a DANE answer with TLSA records, that
// is, one under which DANE applies (RFC 7672 §2.2).
func hasDANERecords(a Requirement) bool {
	return (a.Level == DANE || a.Level == DANEOnly) && len(a.TLSA) > 0
}

// isLocal reports whether s names a decision the local administrator made
// for the destination: a static table entry, a route's own level or an
// override. The default level (SourceDefault) is not one; see
// Requirement.LocalFloor.
func isLocal(s Source) bool {
	return s == SourceStatic || s == SourceRoute || s == SourceOverride
}

// localFloor returns the strictest level that the local answers among
// answers require in enforce mode, with the LocalFloor each answer carries
// from a nested combination; None if there is none (Requirement.LocalFloor).
// Levels are compared in their declared order, so that DANE and dane-only
// rank above encrypt: a Connector keeps such a floor whole rather than
// guess which part of it a "TLS-Required: No" message may drop.
func localFloor(answers []Requirement) Level {
	floor := None
	for _, a := range answers {
		if isLocal(a.Source) && a.Mode == Enforce {
			floor = max(floor, a.Level)
		}
		floor = max(floor, a.LocalFloor)
	}
	return floor
}
