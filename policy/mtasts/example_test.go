package mtasts_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/transport/transporttest"
)

func ExampleParsePolicy() {
	p, err := mtasts.ParsePolicy("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Mode, p.MaxAge, p.MX)
	fmt.Println(p.Matches("mail.example.com"), p.Matches("mx1.example.net"), p.Matches("a.b.example.net"))
	// Output:
	// enforce 604800 [mail.example.com *.example.net]
	// true true false
}

func Example_matchMX() {
	fmt.Println(policy.MatchMX("*.example.com", "mx.example.com"))
	fmt.Println(policy.MatchMX("*.example.com", "a.b.example.com"))
	fmt.Println(policy.MatchMX("*.example.com", "example.com"))
	// Output:
	// true
	// false
	// false
}

func ExampleParseRecord() {
	r, err := mtasts.ParseRecord("v=STSv1; id=20160831085700Z;")
	fmt.Println(r.ID, err)
	_, err = mtasts.ParseRecord("v=STSv1; id=not-alphanumeric")
	fmt.Println(errors.Is(err, mtasts.ErrRecordSyntax))
	// Output:
	// 20160831085700Z <nil>
	// true
}

// A domain that publishes no MTA-STS record yields policy.ErrNoPolicy, so
// that a policy.Strictest lets its other members decide. In production, set
// Cache to a *mtasts.DirCache and call Run in a goroutine to refresh
// policies before they expire.
func ExampleClient_Lookup() {
	dns, err := transporttest.StartResolver(nil) // nothing published
	if err != nil {
		panic(err)
	}
	defer dns.Close()
	c := &mtasts.Client{Resolver: dns}
	_, err = c.Lookup(context.Background(), "example.org")
	fmt.Println(errors.Is(err, policy.ErrNoPolicy), errors.Is(err, mtasts.ErrNoRecord))
	// Output:
	// true true
}
