package policy

import (
	"context"
	"fmt"
	"slices"
)

// LocalPolicy is implemented by Policies that can give the local part of
// their decision on their own: what the administrator's configuration
// (static entries, overrides, default levels) requires of a destination,
// without discovering published policies (MTA-STS, RFC 8461; DANE,
// RFC 7672). A Connector asks it about mail routed to a fixed next hop,
// where published policies, which name a domain's own MX hosts, do not
// apply (see ForNextHop). *Table, Fixed, *Strictest and *Standard
// implement it.
type LocalPolicy interface {
	Policy
	// LookupLocal returns the local requirement for domain (a domain or
	// a next hop "[host]:port"), with errors as Lookup's: one wrapping
	// ErrNoPolicy when the configuration has no entry for it.
	LookupLocal(ctx context.Context, domain string) (Requirement, error)
}

var (
	_ LocalPolicy = (*Table)(nil)
	_ LocalPolicy = Fixed{}
	_ LocalPolicy = (*Strictest)(nil)
	_ LocalPolicy = (*Standard)(nil)
)

// LookupLocal asks p for the local part of its decision on domain:
// p.LookupLocal when p implements LocalPolicy. Any other Policy (a Func,
// say) is asked with Lookup, and an answer from a published policy
// (Source mta-sts or dane) stands only for the local level it outranked,
// its LocalFloor, with its MinVersion and OnFailure (which already
// include the local answers'); without a LocalFloor it abstains.
func LookupLocal(ctx context.Context, p Policy, domain string) (Requirement, error) {
	if lp, ok := p.(LocalPolicy); ok {
		return lp.LookupLocal(ctx, domain)
	}
	r, err := p.Lookup(ctx, domain)
	if err != nil || (r.Source != SourceMTASTS && r.Source != SourceDANE) {
		return r, err
	}
	if r.LocalFloor == None {
		return Requirement{}, fmt.Errorf("%w: %s for %q is a published policy (%s), no local entry",
			ErrNoPolicy, r.Level, domain, r.Source)
	}
	return Requirement{
		Domain:     r.Domain,
		Level:      r.LocalFloor,
		MinVersion: r.MinVersion,
		OnFailure:  r.OnFailure,
		Source:     SourceStatic,
		Reason:     "local floor of: " + r.Reason,
	}, nil
}

// NextHopAnswers are the answers that decide the TLS requirement of mail
// routed to a fixed next hop (a Connector route's NextHop: a partner
// gateway, a smarthost), for one recipient domain. Each is nil when there
// is none (the lookup's error wrapped ErrNoPolicy).
type NextHopAnswers struct {
	// Key is the next hop in Postfix's spelling, "[host]:port"; it is the
	// result's Domain.
	Key string
	// NextHop is the local answer for the next hop itself (LookupLocal of
	// Key: a table's "[host]:port" or "[host]" entry). An answer from the
	// default level (Source default) is no entry of the next hop's own:
	// it counts only when Domain is nil.
	NextHop *Requirement
	// Domain is the local answer for the recipient domain (LookupLocal
	// of the domain: its own entry, else its nearest parent's, else the
	// table's "*" entry or the default level).
	Domain *Requirement
	// Route is the route's own level (its Policy's answer for Key). An
	// answer with Source default is reported as Source route.
	Route *Requirement
}

// ForNextHop returns the requirement for mail routed to a fixed next hop:
// the strictest of the next hop's own entry, the recipient domain's entry
// and the route's own level, so that routing a domain to a gateway never
// weakens what the administrator required for it. The answers are merged
// as Strictest merges its members' (in the order NextHop, Domain, Route):
// the strongest level wins; MinVersion is the highest, OnFailure is
// Bounce if any says so; an override (a static entry with override=yes)
// wins over every other answer, even a stricter one, and is the only way
// to lower the requirement; testing-mode answers only count when all are.
// Match names (Postfix's match=) are the winner's; a Secure winner without
// names takes those of the first other Secure answer that has them, so
// that "secure match=..." is never weakened to the next hop's own name.
// Source says which answer won, and Reason names it ("next hop", "recipient
// domain" or "route") with the table entry.
//
// Published policies (MTA-STS, DANE records of the recipient domain) are
// not among the answers: they name the domain's own MX hosts, not the
// administrator's next hop. When no answer is given the result is the
// strict default, Verify from Source default, as a Connector without a
// Policy applies.
//
// ForNextHop is a pure function: it only reads a.
func ForNextHop(a NextHopAnswers) Requirement {
	var answers []Requirement
	add := func(r *Requirement, label string) {
		if r == nil {
			return
		}
		x := *r
		x.Reason = label + ": " + x.Reason
		answers = append(answers, x)
	}
	if a.NextHop != nil && (a.NextHop.Source != SourceDefault || a.Domain == nil) {
		add(a.NextHop, "next hop "+a.Key)
	}
	add(a.Domain, "recipient domain")
	if a.Route != nil {
		r := *a.Route
		if r.Source == SourceDefault {
			r.Source = SourceRoute
		}
		add(&r, "route")
	}
	if len(answers) == 0 {
		return Requirement{Domain: a.Key, Level: Verify, Source: SourceDefault,
			Reason: "no policy for next hop " + a.Key + " or the recipient domain: strict default"}
	}
	r, _ := merge(answers)
	if r.Level == Secure && len(r.Match) == 0 {
		for _, x := range answers {
			if x.Level == Secure && len(x.Match) > 0 && x.Mode == r.Mode && (x.Source == SourceOverride) == (r.Source == SourceOverride) {
				r.Match = slices.Clone(x.Match)
				break
			}
		}
	}
	r.Domain = a.Key
	r.DiscoveryFailures = discoveryFailures(nil, answers)
	return r
}
