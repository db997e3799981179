package policy

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
)

// lookupPtr returns the answer of p for key, nil when p has no entry.
func lookupPtr(t *testing.T, p Policy, key string) *Requirement {
	t.Helper()
	r, err := LookupLocal(context.Background(), p, key)
	if errors.Is(err, ErrNoPolicy) {
		return nil
	}
	if err != nil {
		t.Fatalf("LookupLocal(%q): %v", key, err)
	}
	return &r
}

// ForNextHop: the strictest of the next hop's entry, the recipient
// domain's entry (with parents and "*") and the route's level.
func TestForNextHop(t *testing.T) {
	const key = "[mx.partner.example]:25"
	tbl := func(text string) *Table {
		tb, err := ParseTable(strings.NewReader(text), "tls_policy")
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	tests := []struct {
		name      string
		table     string
		domain    string
		route     Policy // nil: the route has no level of its own
		level     Level
		minVer    uint16
		onFailure FailureAction
		source    Source
		match     []string
		why       string // substring of Reason
	}{
		{name: "the issue: domain entry applies to its routed next hop",
			table: "partner.example verify protocols=>=TLSv1.3 on-failure=bounce\n", domain: "partner.example",
			level: Verify, minVer: tls.VersionTLS13, onFailure: Bounce, source: SourceStatic, why: "recipient domain: tls_policy:1 entry partner.example"},
		{name: "parent entry covers the domain",
			table: ".example encrypt on-failure=bounce\n", domain: "partner.example",
			level: Encrypt, onFailure: Bounce, source: SourceStatic},
		{name: "star entry covers a route",
			table: "* verify protocols=>=TLSv1.3\n", domain: "other.example",
			level: Verify, minVer: tls.VersionTLS13, source: SourceDefault, why: "entry *"},
		{name: "weaker next hop entry does not lower the domain's",
			table: "[mx.partner.example]:25 encrypt\npartner.example verify\n", domain: "partner.example",
			level: Verify, source: SourceStatic, why: "recipient domain"},
		{name: "stricter next hop entry raises the domain's, constraints added",
			table: "[mx.partner.example] secure match=partner.example\npartner.example verify protocols=>=TLSv1.3 on-failure=bounce\n", domain: "partner.example",
			level: Secure, minVer: tls.VersionTLS13, onFailure: Bounce, source: SourceStatic, match: []string{"partner.example"}, why: "next hop [mx.partner.example]:25"},
		{name: "secure with match names survives a plain route level",
			table: "partner.example secure match=partner.example:.partner.example\n", domain: "partner.example", route: Fixed{Level: Verify},
			level: Secure, source: SourceStatic, match: []string{"partner.example", ".partner.example"}},
		{name: "secure route without names keeps the domain's secure names",
			table: "partner.example secure match=gw.partner.example\n", domain: "partner.example", route: Fixed{Level: Secure, OnFailure: Bounce},
			level: Secure, onFailure: Bounce, source: SourceRoute, match: []string{"gw.partner.example"}},
		{name: "route level raises the table",
			table: "partner.example encrypt\n", domain: "partner.example", route: Fixed{Level: Verify},
			level: Verify, source: SourceRoute, why: "route: default level"},
		{name: "route level cannot lower the star entry",
			table: "* verify\n", domain: "partner.example", route: Fixed{Level: Encrypt},
			level: Verify, source: SourceDefault},
		{name: "override on the next hop lowers the domain entry",
			table: "[mx.partner.example]:25 encrypt override=yes\npartner.example verify on-failure=bounce\n", domain: "partner.example",
			level: Encrypt, source: SourceOverride, why: "(override)"},
		{name: "override on the domain lowers the route level",
			table: "partner.example may override=yes\n", domain: "partner.example", route: Fixed{Level: Verify},
			level: May, source: SourceOverride},
		{name: "next hop entry for another port does not apply",
			table: "[mx.partner.example]:587 secure\npartner.example encrypt\n", domain: "partner.example",
			level: Encrypt, source: SourceStatic},
		{name: "testing-mode domain entry does not replace an enforced one",
			table: "[mx.partner.example] encrypt\npartner.example secure mode=testing\n", domain: "partner.example",
			level: Encrypt, source: SourceStatic},
		{name: "nothing answers: strict default",
			table: "unrelated.example may\n", domain: "partner.example",
			level: Verify, source: SourceDefault, why: "strict default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := tbl(tt.table)
			a := NextHopAnswers{Key: key, NextHop: lookupPtr(t, tb, key), Domain: lookupPtr(t, tb, tt.domain)}
			if tt.route != nil {
				r, err := tt.route.Lookup(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				a.Route = &r
			}
			got := ForNextHop(a)
			if got.Level != tt.level || got.MinVersion != tt.minVer || got.OnFailure != tt.onFailure || got.Source != tt.source ||
				!slices.Equal(got.Match, tt.match) || got.Domain != key {
				t.Errorf("got %v (min %x, match %v, domain %q)\nwant %v min %x %v from %v, match %v",
					got, got.MinVersion, got.Match, got.Domain, tt.level, tt.minVer, tt.onFailure, tt.source, tt.match)
			}
			if !strings.Contains(got.Reason, tt.why) {
				t.Errorf("Reason %q does not say %q", got.Reason, tt.why)
			}
		})
	}
}

// A default answer for the next hop is no entry of its own: the
// recipient domain's entry decides, as it does for MX delivery.
func TestForNextHopDefaultIsNoEntry(t *testing.T) {
	def := &Requirement{Level: Verify, Source: SourceDefault, Reason: "default level"}
	dom := &Requirement{Level: Encrypt, Source: SourceStatic, Reason: "entry legacy.example"}
	if got := ForNextHop(NextHopAnswers{Key: "[h]:25", NextHop: def, Domain: dom}); got.Level != Encrypt {
		t.Errorf("default for the next hop competed with the domain's entry: %v", got)
	}
	if got := ForNextHop(NextHopAnswers{Key: "[h]:25", NextHop: def}); got.Level != Verify || got.Source != SourceDefault {
		t.Errorf("default alone: %v", got)
	}
}

// LookupLocal leaves published policies out: Standard asks only Static and
// Default, and a Policy that is no LocalPolicy keeps only the local floor
// of a published answer.
func TestLookupLocal(t *testing.T) {
	ctx := context.Background()
	asked := 0
	sts := Func(func(_ context.Context, d string) (Requirement, error) {
		asked++
		return Requirement{Domain: d, Level: Verify, Source: SourceMTASTS, MXPatterns: []string{"mx.d.example"}}, nil
	})
	table, err := ParseTable(strings.NewReader("d.example encrypt on-failure=bounce\n[gw.example] secure\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	std := &Standard{Static: table, MTASTS: sts, Default: Fixed{Level: May}}
	r, err := LookupLocal(ctx, std, "d.example")
	if err != nil || r.Level != Encrypt || r.Source != SourceStatic || r.OnFailure != Bounce || asked != 0 || r.MXPatterns != nil {
		t.Errorf("Standard local = %v, %v (MTA-STS asked %d times)", r, err, asked)
	}
	if r, err := LookupLocal(ctx, std, "[gw.example]:25"); err != nil || r.Level != Secure || asked != 0 {
		t.Errorf("Standard local next hop = %v, %v", r, err)
	}
	if r, err := std.Lookup(ctx, "[gw.example]:25"); err != nil || r.Level != Secure || asked != 0 {
		t.Errorf("Standard.Lookup of a next hop = %v, %v (MTA-STS asked %d times)", r, err, asked)
	}
	if r, err := LookupLocal(ctx, &Standard{}, "x.example"); err != nil || r.Level != Verify || r.Source != SourceDefault {
		t.Errorf("zero Standard local = %v, %v", r, err)
	}
	// A Func wrapping the whole composition: the published winner stands
	// for its local floor only.
	wrapped := Func(std.Lookup)
	r, err = LookupLocal(ctx, wrapped, "d.example")
	if err != nil || r.Level != Encrypt || r.Source != SourceStatic || r.OnFailure != Bounce || r.MXPatterns != nil {
		t.Errorf("Func local = %v, %v", r, err)
	}
	if _, err := LookupLocal(ctx, sts, "d.example"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("published answer without local floor: err = %v, want ErrNoPolicy", err)
	}
	r, err = LookupLocal(ctx, Combine(table, sts), "d.example")
	if err != nil || r.Level != Encrypt || r.Source != SourceStatic {
		t.Errorf("Strictest local = %v, %v", r, err)
	}
}

// The zero Fixed is strict: Verify, never plaintext unless asked for.
func TestFixedZeroIsStrict(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		f    Fixed
		want Level
	}{
		{Fixed{}, Verify},
		{Fixed{OnFailure: Bounce}, Verify},
		{Fixed{Level: None}, Verify},
		{Fixed{InsecurePlaintext: true}, None},
		{Fixed{Level: May}, May},
		{Fixed{Level: Encrypt, InsecurePlaintext: true}, Encrypt},
	}
	for _, tt := range tests {
		if r, err := tt.f.Lookup(ctx, "x.example"); err != nil || r.Level != tt.want || r.Source != SourceDefault {
			t.Errorf("%+v.Lookup = %v, %v; want %v", tt.f, r, err, tt.want)
		}
	}
}
