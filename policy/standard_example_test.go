package policy_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/policy"
)

// Standard composes the published policies (here stand-ins for an
// *mtasts.Client and a *dane.Policy) with the administrator's table and
// default, and explains its decision in one line.
func ExampleStandard() {
	table, err := policy.ParseTable(strings.NewReader("partner.example secure match=partner.example\n"), "tls_policy")
	if err != nil {
		panic(err)
	}
	mtaSTS := policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		if d != "sts.example" {
			return policy.Requirement{}, policy.ErrNoPolicy
		}
		return policy.Requirement{Domain: d, Level: policy.Verify, MXPatterns: []string{"mx.sts.example"},
			MXAuthenticated: true, Source: policy.SourceMTASTS, Reason: "mta-sts id=1 mode=enforce"}, nil
	})
	p := &policy.Standard{Static: table, MTASTS: mtaSTS, Default: policy.Fixed{Level: policy.May}}
	for _, d := range []string{"sts.example", "partner.example", "other.example"} {
		r, err := p.Lookup(context.Background(), d)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %s from %s\n", d, r.Level, r.Source)
	}
	// Output:
	// sts.example: verify from mta-sts
	// partner.example: secure from static
	// other.example: may from default
}
