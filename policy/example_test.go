package policy_test

import (
	"context"
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

// A Connector with a fixed next hop looks the next hop up first and falls
// back to the recipient domain when the table has no entry for it.
func ExampleTable_LookupNextHop() {
	table, err := policy.ParseTable(strings.NewReader("[relay.example.net]:587 secure match=example.net\n* encrypt\n"), "tls_policy")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, port := range []int{587, 25} {
		req, err := table.LookupNextHop(ctx, "relay.example.net", port)
		if errors.Is(err, policy.ErrNoPolicy) {
			req, err = table.Lookup(ctx, "recipient.example")
		}
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(req)
	}
	// Output:
	// relay.example.net: secure (static: tls_policy:1 entry [relay.example.net]:587), match=example.net, on failure defer
	// recipient.example: encrypt (default: tls_policy:2 entry *), on failure defer
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
