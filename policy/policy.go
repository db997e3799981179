package policy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// Level is an outbound TLS security level with Postfix's meanings. Levels are
// ordered by strength for the purpose of "strictest wins": None < May <
// Encrypt < DANE < DANEOnly < Verify < Secure, where DANE (which falls back to
// May when no usable TLSA records exist) ranks above Encrypt only when
// records exist; see Requirement.Strength.
type Level int

// Levels. The zero value is None only for the type; a Requirement built by
// this package always names its level explicitly.
const (
	// None: no TLS; plaintext even if STARTTLS is offered.
	None Level = iota
	// May: opportunistic TLS; falls back to plaintext when STARTTLS is not
	// offered or fails (RFC 3207; Postfix "may").
	May
	// Encrypt: TLS mandatory, certificate not checked. Never plaintext.
	Encrypt
	// DANE: opportunistic DANE (RFC 7672 §2.2): with usable DNSSEC-validated
	// TLSA records the certificate must match them; without, behaves as May.
	DANE
	// DANEOnly: DANE mandatory: no usable TLSA records is a failure.
	DANEOnly
	// Verify: TLS mandatory, PKIX chain must verify and the certificate must
	// match the MX host name (as found in DNS).
	Verify
	// Secure: TLS mandatory, PKIX chain must verify and the certificate must
	// match the next-hop domain or explicit match names, not the (forgeable)
	// MX host name.
	Secure
)

var levelNames = [...]string{"none", "may", "encrypt", "dane", "dane-only", "verify", "secure"}

// String returns the Postfix spelling of l ("dane-only").
func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// ParseLevel parses a Postfix level name, case-insensitively.
func ParseLevel(s string) (Level, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range levelNames {
		if s == n {
			return Level(i), nil
		}
	}
	return None, fmt.Errorf("policy: unknown TLS level %q (want none, may, encrypt, dane, dane-only, verify or secure)", s)
}

// RequiresTLS reports whether l forbids plaintext delivery. DANE requires TLS
// only when usable TLSA records exist; that is decided per MX by the caller.
func (l Level) RequiresTLS() bool { return l == Encrypt || l >= DANEOnly }

// VerifiesPKIX reports whether l checks the certificate chain against the
// WebPKI roots (Verify and Secure).
func (l Level) VerifiesPKIX() bool { return l == Verify || l == Secure }

// Mode says whether a published policy is enforced or only reported on
// (RFC 8461 §5; RFC 8460). The zero value is Enforce.
type Mode int

// Modes.
const (
	// Enforce: a failure to meet the requirement stops delivery (RFC 8461
	// §5 "enforce").
	Enforce Mode = iota
	// Testing: failures are reported (TLS-RPT, RFC 8460) and logged, but
	// delivery proceeds as with May (RFC 8461 §5 "testing").
	Testing
)

// String returns "enforce" or "testing", the RFC 8461 §3.2 mode names.
func (m Mode) String() string {
	if m == Testing {
		return "testing"
	}
	return "enforce"
}

// FailureAction is what to do with a message when its TLS requirement is not
// met. The zero value is Defer (Postfix's behaviour: keep the message and
// retry until it expires); Bounce returns it at once with a DSN, as Exchange's
// TLS-required connectors do.
type FailureAction int

// Failure actions.
const (
	// Defer keeps the message queued and retries (a 4xx outcome) until the
	// queue gives up on it.
	Defer FailureAction = iota
	// Bounce fails the message at once (a 5xx outcome) so that the sender
	// gets a DSN now.
	Bounce
)

// String returns "defer" or "bounce", the spelling of the table attribute
// on-failure=.
func (a FailureAction) String() string {
	if a == Bounce {
		return "bounce"
	}
	return "defer"
}

// Source names where a decision came from, for logs, DSNs and TLS-RPT.
type Source string

// Sources.
const (
	SourceDefault  Source = "default"  // the configured default level
	SourceStatic   Source = "static"   // a static table entry
	SourceRoute    Source = "route"    // a route's own level
	SourceMTASTS   Source = "mta-sts"  // RFC 8461
	SourceDANE     Source = "dane"     // RFC 7672
	SourceOverride Source = "override" // explicit local override of a published policy
	// SourceREQUIRETLS is the message's own REQUIRETLS (RFC 8689 §4.1).
	SourceREQUIRETLS Source = "requiretls"
)

// TLSA is one TLSA resource record (RFC 6698 §2.1).
type TLSA struct {
	Usage        uint8  // 2 = DANE-TA, 3 = DANE-EE (RFC 7218)
	Selector     uint8  // 0 = full certificate, 1 = SubjectPublicKeyInfo
	MatchingType uint8  // 0 = full, 1 = SHA2-256, 2 = SHA2-512
	Data         []byte // Certificate Association Data (RFC 6698 §2.1.4)
}

// Requirement is the TLS a destination requires, with its provenance. It is
// plain data: compare, print and copy it freely.
type Requirement struct {
	// Domain is the policy domain (the next-hop domain) the lookup was for.
	Domain string
	// Level is the security level.
	Level Level
	// MinVersion is the lowest acceptable TLS version (tls.VersionTLS12...).
	// Zero means TLS 1.2 for levels that require TLS (RFC 9325 §3.1.1).
	MinVersion uint16
	// Match lists names the certificate must match at Secure (Postfix's
	// match=): "example.net" exactly, ".example.net" any subdomain. Empty
	// means the next-hop domain and its subdomains ("nexthop:dot-nexthop").
	Match []string
	// MXPatterns, when non-empty, restricts the MX hosts that may be used
	// (MTA-STS "mx:" lines, RFC 8461 §4.1: "*.example.com" matches one label).
	MXPatterns []string
	// TLSA holds DNSSEC-validated TLSA records for DANE levels.
	TLSA []TLSA
	// MXAuthenticated is true when the MX host set was authenticated by DANE
	// (DNSSEC) or an enforced MTA-STS policy (RFC 8689 §4.2 requires this for
	// REQUIRETLS).
	MXAuthenticated bool
	// Mode is Enforce (zero) or Testing: in testing mode failures are
	// recorded for TLS-RPT but delivery proceeds as with May.
	Mode Mode
	// OnFailure is what happens to the message when the requirement is not
	// met. Zero is Defer.
	OnFailure FailureAction
	// PolicyString is the published policy as TLS-RPT reports it in its
	// "policy-string" member (RFC 8460 §4.3): the MTA-STS policy text, one
	// line per element. Nil for local decisions; DANE's records are in TLSA.
	PolicyString []string
	// Floor matters only in Testing mode. It is the level of the enforced
	// answer that a stricter testing-mode policy outranked (see Standard):
	// delivery still meets Floor's TLS requirement (at Encrypt, no
	// plaintext), while Level is checked and its failures only reported
	// (RFC 8461 §5). The zero value, None, enforces nothing: delivery
	// proceeds as with May.
	Floor Level
	// WithoutTLSA matters only at DANE and DANEOnly: it is the level of
	// the MX hosts without usable TLSA records. When DANE took precedence
	// over an enforced MTA-STS policy (see Standard), it is that policy's
	// level, Verify, and MXPatterns and PolicyString are that policy's
	// (RFC 8461 §2 gives DANE precedence only where DANE applies); when
	// DANE outranked an enforced encrypt (a static entry, a route, the
	// default level), it is Encrypt. The zero value, None, means DANE's
	// own fallback (dane: may; dane-only: not used). Plan applies it.
	WithoutTLSA Level
	// LocalFloor is the strictest level the administrator's own enforced
	// answers (static entries, routes, nested LocalFloors) asked for when
	// a published policy or the default won (Strictest and Standard set
	// it; the default level itself does not count). None otherwise, and
	// when Source is local: Level is then the local requirement (see
	// LocalLevel). Plan never lets "TLS-Required: No" (RFC 8689) relax a
	// destination below it.
	LocalFloor Level
	// DiscoveryFailures lists the published policies that the domain
	// announces but that could not be discovered for this decision, for
	// TLS-RPT (RFC 8460 §4.3.2.2: an MTA-STS TXT record whose policy could
	// not be fetched, was invalid, or was served without a WebPKI-valid
	// certificate). Delivery does not depend on them: a domain whose policy
	// is unavailable is treated as having none (RFC 8461 §5), or its valid
	// cached policy is used (RFC 8461 §5.1), and the decision is made by
	// the other fields. Strictest and Standard collect them from every
	// member (from answers and from the errors of members that abstain,
	// see DiscoveryError); a Connector records one TLS-RPT failure per
	// element. Nil means no failure to report.
	DiscoveryFailures []DiscoveryFailure
	// Source says where the decision came from.
	Source Source
	// Reason is a short human explanation ("static table entry .example.com
	// line 3"), logged and reported.
	Reason string
}

// EffectiveMinVersion returns MinVersion, or TLS 1.2 when it is zero.
func (r Requirement) EffectiveMinVersion() uint16 {
	if r.MinVersion == 0 {
		return tls.VersionTLS12
	}
	return r.MinVersion
}

// String explains the decision in one line, e.g.
// "legacy.example: encrypt (static: line 3), on failure bounce".
func (r Requirement) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%s", r.Domain, r.Level, r.Source)
	if r.Reason != "" {
		fmt.Fprintf(&b, ": %s", r.Reason)
	}
	b.WriteString(")")
	if r.Mode == Testing {
		b.WriteString(", testing mode")
		if r.Floor > May {
			fmt.Fprintf(&b, " (%s enforced)", r.Floor)
		}
	}
	if r.MinVersion > tls.VersionTLS12 {
		fmt.Fprintf(&b, ", min %s", tls.VersionName(r.MinVersion))
	}
	if len(r.Match) > 0 {
		fmt.Fprintf(&b, ", match=%s", strings.Join(r.Match, ":"))
	}
	fmt.Fprintf(&b, ", on failure %s", r.OnFailure)
	return b.String()
}

// Policy looks up the TLS requirement for a destination domain.
//
// Implementations must be safe for concurrent use and honour ctx. An error
// means the policy could not be determined (a temporary DNS failure, say);
// callers must then defer, never downgrade. The one exception is an error
// wrapping ErrNoPolicy, which says the policy has no opinion on the domain.
type Policy interface {
	Lookup(ctx context.Context, domain string) (Requirement, error)
}

// ErrNoPolicy is wrapped by a Policy's Lookup error when it has no entry for
// the domain (a Table without a matching or default entry, a domain that
// publishes no MTA-STS policy). It is not a failure: Strictest skips members
// that return it, and a caller using a Policy on its own should apply its
// own default level (a Fixed policy). Test with errors.Is.
var ErrNoPolicy = errors.New("policy: no policy for this destination")

// Func adapts a function to Policy.
type Func func(ctx context.Context, domain string) (Requirement, error)

// Lookup calls f.
func (f Func) Lookup(ctx context.Context, domain string) (Requirement, error) { return f(ctx, domain) }

var _ Policy = Func(nil)

// Fixed is a Policy that returns the same level for every domain, from
// SourceDefault: the administrator's "use TLS for all outbound mail"
// (Postfix's smtp_tls_security_level).
//
// The zero Fixed is strict, as this module's configuration structs are: a
// zero Level is taken as Verify, the level a Connector without a Policy
// applies, not as None, so that a Fixed built without a level (say
// Fixed{OnFailure: Bounce}) never means plaintext. Plaintext to every
// destination must be asked for with InsecurePlaintext.
type Fixed struct {
	// Level is returned for every domain. Zero (None) means Verify unless
	// InsecurePlaintext is set.
	Level Level
	// OnFailure is returned for every domain. Zero is Defer.
	OnFailure FailureAction
	// InsecurePlaintext makes a zero Level mean None: no TLS at all, even
	// where STARTTLS is offered. It has no effect on any other Level.
	InsecurePlaintext bool
}

// Lookup returns f's level for domain.
func (f Fixed) Lookup(_ context.Context, domain string) (Requirement, error) {
	r := Requirement{Domain: domain, Level: f.Level, OnFailure: f.OnFailure, Source: SourceDefault, Reason: "default level"}
	if f.Level == None && !f.InsecurePlaintext {
		r.Level = Verify
		r.Reason = "default level (Fixed without a Level: verify; InsecurePlaintext asks for none)"
	}
	return r, nil
}

// LookupLocal is Lookup: a fixed level is local configuration. It
// implements LocalPolicy.
func (f Fixed) LookupLocal(ctx context.Context, domain string) (Requirement, error) {
	return f.Lookup(ctx, domain)
}
