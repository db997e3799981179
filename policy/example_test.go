package policy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/policy"
)

// A table in the Postfix-like text format, and a few lookups: an exact
// domain, a parent-domain entry, a fixed next hop and the default entry.
func ExampleParseTable() {
	const text = `
# TLS policy for outbound mail
partner.example          encrypt  on-failure=bounce
.bank.example            verify   protocols=>=TLSv1.3
[smarthost.example.net]:587 secure match=example.net:.example.net
*                        may
`
	table, err := policy.ParseTable(strings.NewReader(text), "tls_policy")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, dest := range []string{"Partner.Example.", "www.bank.example", "[smarthost.example.net]:587", "elsewhere.example"} {
		req, err := table.Lookup(ctx, dest)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(req)
	}
	// Output:
	// partner.example: encrypt (static: tls_policy:3 entry partner.example), on failure bounce
	// www.bank.example: verify (static: tls_policy:4 entry .bank.example), min TLS 1.3, on failure defer
	// smarthost.example.net: secure (static: tls_policy:5 entry [smarthost.example.net]:587), match=example.net:.example.net, on failure defer
	// elsewhere.example: may (default: tls_policy:6 entry *), on failure defer
}

// Parse errors name the file and the line, and are *ParseError values.
func ExampleParseError() {
	_, err := policy.ParseTable(strings.NewReader("partner.example encrpyt\n"), "tls_policy")
	fmt.Println(err)
	var pe *policy.ParseError
	if errors.As(err, &pe) {
		fmt.Println("line", pe.Line)
	}
	// Output:
	// policy: tls_policy line 1: unknown level "encrpyt" (want none, may, encrypt, dane, dane-only, verify or secure)
	// line 1
}

// Mail for partner.example routed to the fixed next hop
// [mx.partner.example]:25 is held to the strictest of the next hop's own
// entry, the recipient domain's entry and the route's level, as a
// transport.Connector does: the domain's TLS 1.3 and bounce survive the
// routing, and the next hop's secure match= names raise the level.
func ExampleTable_LookupNextHop() {
	table, err := policy.ParseTable(strings.NewReader(`
[mx.partner.example]:25  secure  match=.partner.example
partner.example          verify  protocols=>=TLSv1.3 on-failure=bounce
*                        encrypt
`), "tls_policy")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	hop, err := table.LookupNextHop(ctx, "mx.partner.example", 25)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(hop)
	domain, err := table.Lookup(ctx, "partner.example")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(domain)
	req := policy.ForNextHop(policy.NextHopAnswers{Key: "[mx.partner.example]:25", NextHop: &hop, Domain: &domain})
	fmt.Println(req.Level, req.Source, tls.VersionName(req.MinVersion), req.OnFailure, req.Match)
	// Output:
	// mx.partner.example: secure (static: tls_policy:2 entry [mx.partner.example]:25), match=.partner.example, on failure defer
	// partner.example: verify (static: tls_policy:3 entry partner.example), min TLS 1.3, on failure bounce
	// secure static TLS 1.3 bounce [.partner.example]
}

// Strictest wins: the static table may raise the administrator's default
// but not lower it, except by an explicit override.
func ExampleCombine() {
	table, err := policy.ParseTable(strings.NewReader(`
partner.example  secure
legacy.example   may     override=yes
`), "tls_policy")
	if err != nil {
		fmt.Println(err)
		return
	}
	all := policy.Combine(table, policy.Fixed{Level: policy.Encrypt})
	ctx := context.Background()
	for _, d := range []string{"partner.example", "legacy.example", "other.example"} {
		req, err := all.Lookup(ctx, d)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s: %s from %s\n  %s\n", d, req.Level, req.Source, req.Reason)
	}
	// Output:
	// partner.example: secure from static
	//   tls_policy:2 entry partner.example; strictest of static secure (chosen), default encrypt
	// legacy.example: may from override
	//   tls_policy:3 entry legacy.example (override); strictest of override may (chosen), default encrypt (overridden)
	// other.example: encrypt from default
	//   default level
}

// ExampleNewPlan asks what a connection to each MX host needs: the
// domain's enforced MTA-STS policy says verify, and DANE found usable TLSA
// records at the first host only. The first host is checked against its
// records, the second is still held to the MTA-STS policy (RFC 8461 §2).
func ExampleNewPlan() {
	req := policy.Requirement{Domain: "example.com", Level: policy.DANE, Source: policy.SourceDANE,
		TLSA:        []policy.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}},
		WithoutTLSA: policy.Verify, MXPatterns: []string{"*.example.com"}}
	p := policy.NewPlan(req, policy.Message{}, true)
	for _, h := range []policy.Host{
		{Name: "mx1.example.com", DANE: policy.DANEUsable, HasAddrs: true},
		{Name: "mx2.example.com", DANE: policy.DANENoRecords, HasAddrs: true},
	} {
		hop, refused := p.Host(h)
		fmt.Printf("%s: %s (refused: %v)\n", h.Name, hop, refused != nil)
	}
	// A message with REQUIRETLS to a domain without MTA-STS or DANE.
	p = policy.NewPlan(policy.Requirement{Domain: "plain.example", Level: policy.May}, policy.Message{RequireTLS: true}, true)
	fmt.Println(p.CheckRequireTLS(false, false, nil))
	// Output:
	// mx1.example.com: tls required; dane: certificate matches the host's TLSA records (refused: false)
	// mx2.example.com: tls required; verify: PKIX chain and MX host name (refused: false)
	// REQUIRETLS support required: level may does not verify the server certificate
}
