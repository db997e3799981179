package policy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// answer returns a Policy that always answers r (with the domain filled in).
func answer(r Requirement) Policy {
	return Func(func(_ context.Context, domain string) (Requirement, error) {
		r.Domain = domain
		return r, nil
	})
}

func failing(err error) Policy {
	return Func(func(context.Context, string) (Requirement, error) { return Requirement{}, err })
}

func TestStrength(t *testing.T) {
	order := []Requirement{
		{Level: None},
		{Level: May},
		{Level: DANE},
		{Level: Encrypt},
		{Level: DANE, TLSA: []TLSA{{Usage: 3, Selector: 1, MatchingType: 1}}},
		{Level: DANEOnly},
		{Level: Verify},
		{Level: Secure},
	}
	for i := 1; i < len(order); i++ {
		if a, b := order[i-1], order[i]; a.Strength() >= b.Strength() {
			t.Errorf("Strength(%v, %d TLSA) = %d >= Strength(%v, %d TLSA) = %d",
				a.Level, len(a.TLSA), a.Strength(), b.Level, len(b.TLSA), b.Strength())
		}
	}
	if s := (Requirement{Level: Level(99)}).Strength(); s != -1 {
		t.Errorf("invalid level strength %d", s)
	}
}

func TestStrictest(t *testing.T) {
	tlsa := []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2}}}
	boom := errors.New("dns: SERVFAIL")
	tests := []struct {
		name    string
		members []Policy
		want    Requirement // Reason checked separately when wantWhy is set
		wantWhy []string    // substrings of Reason
		wantErr error
	}{
		{
			name:    "single member passes through unchanged",
			members: []Policy{answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "r1"})},
			want:    Requirement{Domain: "d.example", Level: Encrypt, Source: SourceStatic, Reason: "r1"},
		},
		{
			name: "stricter level wins whatever the order",
			members: []Policy{
				answer(Requirement{Level: Verify, Source: SourceDefault, Reason: "default"}),
				answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "static"}),
			},
			// The static entry it outranked stays the local floor.
			want:    Requirement{Domain: "d.example", Level: Verify, Source: SourceDefault, LocalFloor: Encrypt},
			wantWhy: []string{"default; strictest of default verify (chosen), static encrypt"},
		},
		{
			name: "static raises a published policy",
			members: []Policy{
				answer(Requirement{Level: Verify, Source: SourceMTASTS, MXPatterns: []string{"*.d.example"}, MXAuthenticated: true, Reason: "sts"}),
				answer(Requirement{Level: Secure, Source: SourceStatic, Match: []string{"d.example"}, Reason: "static"}),
			},
			// The winner keeps its own level and names; the loser's MX
			// restriction and authentication are kept.
			want: Requirement{Domain: "d.example", Level: Secure, Source: SourceStatic, Match: []string{"d.example"},
				MXPatterns: []string{"*.d.example"}, MXAuthenticated: true},
			wantWhy: []string{"static; strictest of mta-sts verify, static secure (chosen)"},
		},
		{
			name: "static cannot lower a published policy without override",
			members: []Policy{
				answer(Requirement{Level: Verify, Source: SourceMTASTS, Reason: "sts"}),
				answer(Requirement{Level: May, Source: SourceStatic, Reason: "static"}),
			},
			want: Requirement{Domain: "d.example", Level: Verify, Source: SourceMTASTS, LocalFloor: May},
		},
		{
			name: "tie on level: higher minimum version wins",
			members: []Policy{
				answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "a"}),
				answer(Requirement{Level: Encrypt, MinVersion: tls.VersionTLS13, Source: SourceRoute, Reason: "b"}),
			},
			want: Requirement{Domain: "d.example", Level: Encrypt, MinVersion: tls.VersionTLS13, Source: SourceRoute},
		},
		{
			name: "tie on level and version: bounce wins",
			members: []Policy{
				answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "a"}),
				answer(Requirement{Level: Encrypt, OnFailure: Bounce, Source: SourceRoute, Reason: "b"}),
			},
			want: Requirement{Domain: "d.example", Level: Encrypt, OnFailure: Bounce, Source: SourceRoute},
		},
		{
			name: "full tie: earlier member wins",
			members: []Policy{
				answer(Requirement{Level: Encrypt, Source: SourceRoute, Reason: "a"}),
				answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "b"}),
			},
			want:    Requirement{Domain: "d.example", Level: Encrypt, Source: SourceRoute},
			wantWhy: []string{"a; strictest of route encrypt (chosen), static encrypt"},
		},
		{
			name: "min version and bounce are taken from a weaker member",
			members: []Policy{
				answer(Requirement{Level: Verify, Source: SourceMTASTS, Reason: "sts"}),
				answer(Requirement{Level: Encrypt, MinVersion: tls.VersionTLS13, OnFailure: Bounce, Source: SourceStatic, Reason: "static"}),
			},
			want:    Requirement{Domain: "d.example", Level: Verify, MinVersion: tls.VersionTLS13, OnFailure: Bounce, Source: SourceMTASTS, LocalFloor: Encrypt},
			wantWhy: []string{"static encrypt min TLS 1.3"},
		},
		{
			name: "DANE without TLSA ranks below encrypt",
			members: []Policy{
				answer(Requirement{Level: DANE, Source: SourceDANE, Reason: "no records"}),
				answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "static"}),
			},
			want: Requirement{Domain: "d.example", Level: Encrypt, Source: SourceStatic},
		},
		{
			name: "DANE with TLSA takes precedence over MTA-STS (RFC 8461 §2)",
			members: []Policy{
				answer(Requirement{Level: Verify, Source: SourceMTASTS, MXPatterns: []string{"*.d.example"}, MXAuthenticated: true, Reason: "sts"}),
				answer(Requirement{Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "records"}),
			},
			// The yielded MTA-STS policy still governs MX hosts without usable
			// TLSA records (WithoutTLSA, its patterns): see Strictest.
			want: Requirement{Domain: "d.example", Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE,
				WithoutTLSA: Verify, MXPatterns: []string{"*.d.example"}},
			wantWhy: []string{"records; strictest of mta-sts verify (DANE takes precedence, RFC 8461 §2), dane dane (chosen)"},
		},
		{
			name: "MTA-STS wins over DANE without TLSA records",
			members: []Policy{
				answer(Requirement{Level: DANE, Source: SourceDANE, Reason: "no records"}),
				answer(Requirement{Level: Verify, Source: SourceMTASTS, MXPatterns: []string{"*.d.example"}, MXAuthenticated: true, Reason: "sts"}),
			},
			want: Requirement{Domain: "d.example", Level: Verify, MXPatterns: []string{"*.d.example"}, MXAuthenticated: true, Source: SourceMTASTS},
		},
		{
			name: "a static verify still outranks DANE with records",
			members: []Policy{
				answer(Requirement{Level: Verify, Source: SourceStatic, Reason: "static"}),
				answer(Requirement{Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "records"}),
			},
			want: Requirement{Domain: "d.example", Level: Verify, MXAuthenticated: true, Source: SourceStatic},
		},
		{
			name: "a static dane-only takes the DANE lookup's records",
			members: []Policy{
				answer(Requirement{Level: DANEOnly, Source: SourceStatic, Reason: "static"}),
				answer(Requirement{Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "records"}),
			},
			want: Requirement{Domain: "d.example", Level: DANEOnly, TLSA: tlsa, MXAuthenticated: true, Source: SourceStatic},
		},
		{
			name: "DANE with TLSA ranks above encrypt, which still holds for hosts without records",
			members: []Policy{
				answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "static"}),
				answer(Requirement{Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "records"}),
			},
			want: Requirement{Domain: "d.example", Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, LocalFloor: Encrypt, WithoutTLSA: Encrypt},
		},
		{
			name: "testing member does not raise an enforced one",
			members: []Policy{
				answer(Requirement{Level: May, Source: SourceDefault, Reason: "default"}),
				answer(Requirement{Level: Verify, Mode: Testing, MinVersion: tls.VersionTLS13, OnFailure: Bounce, Source: SourceMTASTS, Reason: "sts testing"}),
			},
			want:    Requirement{Domain: "d.example", Level: May, Source: SourceDefault},
			wantWhy: []string{"mta-sts verify min TLS 1.3 (testing, not enforced)"},
		},
		{
			name: "enforced member wins over a weaker testing one",
			members: []Policy{
				answer(Requirement{Level: Encrypt, Mode: Testing, Source: SourceMTASTS, Reason: "t"}),
				answer(Requirement{Level: Verify, Source: SourceStatic, Reason: "s"}),
			},
			want: Requirement{Domain: "d.example", Level: Verify, Source: SourceStatic},
		},
		{
			name: "only testing members: strictest, still testing",
			members: []Policy{
				answer(Requirement{Level: Encrypt, Mode: Testing, Source: SourceStatic, Reason: "t1"}),
				answer(Requirement{Level: Verify, Mode: Testing, Source: SourceMTASTS, Reason: "t2"}),
			},
			want: Requirement{Domain: "d.example", Level: Verify, Mode: Testing, Source: SourceMTASTS},
		},
		{
			name: "override lowers a stricter published policy",
			members: []Policy{
				answer(Requirement{Level: Secure, Source: SourceMTASTS, MXPatterns: []string{"mx.d.example"}, Reason: "sts"}),
				answer(Requirement{Level: May, Source: SourceOverride, Reason: "tls_policy:4 entry d.example (override)"}),
				answer(Requirement{Level: Verify, Mode: Testing, Source: SourceStatic, Reason: "t"}),
			},
			// Nothing of the overridden answers is kept.
			want:    Requirement{Domain: "d.example", Level: May, Source: SourceOverride},
			wantWhy: []string{"tls_policy:4 entry d.example (override); strictest of mta-sts secure (overridden), override may (chosen), static verify (overridden)"},
		},
		{
			name: "override may also raise",
			members: []Policy{
				answer(Requirement{Level: Encrypt, Source: SourceMTASTS, Reason: "sts"}),
				answer(Requirement{Level: Secure, Source: SourceOverride, Reason: "o"}),
			},
			want: Requirement{Domain: "d.example", Level: Secure, Source: SourceOverride},
		},
		{
			name: "several overrides: strictest of them",
			members: []Policy{
				answer(Requirement{Level: None, Source: SourceOverride, Reason: "o1"}),
				answer(Requirement{Level: Secure, Source: SourceStatic, Reason: "s"}),
				answer(Requirement{Level: Encrypt, Source: SourceOverride, Reason: "o2"}),
			},
			want: Requirement{Domain: "d.example", Level: Encrypt, Source: SourceOverride},
		},
		{
			name: "abstaining members are skipped",
			members: []Policy{
				failing(ErrNoPolicy),
				nil,
				answer(Requirement{Level: Encrypt, Source: SourceStatic, Reason: "r"}),
				failing(errors.Join(errors.New("x"), ErrNoPolicy)),
			},
			want: Requirement{Domain: "d.example", Level: Encrypt, Source: SourceStatic, Reason: "r"},
		},
		{
			name:    "every member abstains",
			members: []Policy{failing(ErrNoPolicy), nil},
			wantErr: ErrNoPolicy,
		},
		{
			name:    "no members",
			wantErr: ErrNoPolicy,
		},
		{
			name: "an error is returned even when others answered",
			members: []Policy{
				answer(Requirement{Level: Secure, Source: SourceStatic, Reason: "r"}),
				failing(boom),
			},
			wantErr: boom,
		},
		{
			name: "an error beats an override",
			members: []Policy{
				answer(Requirement{Level: None, Source: SourceOverride, Reason: "o"}),
				failing(boom),
			},
			wantErr: boom,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Combine(tt.members...).Lookup(context.Background(), "d.example")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			why := got.Reason
			if tt.want.Reason == "" {
				got.Reason = ""
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
			for _, w := range tt.wantWhy {
				if !strings.Contains(why, w) {
					t.Errorf("Reason %q lacks %q", why, w)
				}
			}
		})
	}
}

func TestStrictestWithTables(t *testing.T) {
	static := mustTable(t, "partner.example verify\nlegacy.example may override=yes\n.bank.example encrypt protocols=>=TLSv1.3\n")
	s := Combine(static, Fixed{Level: Encrypt})
	ctx := context.Background()
	tests := []struct {
		domain string
		level  Level
		source Source
		minVer uint16
	}{
		{"partner.example", Verify, SourceStatic, 0},
		{"legacy.example", May, SourceOverride, 0},
		{"www.bank.example", Encrypt, SourceStatic, tls.VersionTLS13}, // tie on level: higher version
		{"other.example", Encrypt, SourceDefault, 0},                  // the table abstains
	}
	for _, tt := range tests {
		r, err := s.Lookup(ctx, tt.domain)
		if err != nil || r.Level != tt.level || r.Source != tt.source || r.MinVersion != tt.minVer {
			t.Errorf("%s: %v, %v; want %v from %s", tt.domain, r, err, tt.level, tt.source)
		}
	}
	// Combinations nest.
	outer := Combine(s, answer(Requirement{Level: Secure, Source: SourceRoute, Reason: "route"}))
	if r, err := outer.Lookup(ctx, "legacy.example"); err != nil || r.Level != May || r.Source != SourceOverride {
		t.Errorf("nested override: %v %v", r, err)
	}
	if r, err := outer.Lookup(ctx, "other.example"); err != nil || r.Level != Secure || r.Source != SourceRoute {
		t.Errorf("nested: %v %v", r, err)
	}
}

func TestStrictestContext(t *testing.T) {
	called := false
	s := Combine(Func(func(ctx context.Context, _ string) (Requirement, error) {
		called = true
		return Requirement{Level: Encrypt}, nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Lookup(ctx, "d.example"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if called {
		t.Error("member asked after cancellation")
	}
}

func TestStrictestCopies(t *testing.T) {
	match := []string{"a.example"}
	mx := []string{"mx.a.example"}
	s := Combine(
		answer(Requirement{Level: Secure, Match: match, Source: SourceStatic}),
		answer(Requirement{Level: Verify, MXPatterns: mx, Source: SourceMTASTS}),
	)
	r, err := s.Lookup(context.Background(), "a.example")
	if err != nil {
		t.Fatal(err)
	}
	r.Match[0], r.MXPatterns[0] = "evil", "evil"
	if match[0] != "a.example" || mx[0] != "mx.a.example" {
		t.Error("result shares slices with a member's answer")
	}
}

func TestStrictestLogsOverrides(t *testing.T) {
	var buf bytes.Buffer
	s := Combine(
		answer(Requirement{Level: Verify, Source: SourceMTASTS, Reason: "sts"}),
		answer(Requirement{Level: May, Source: SourceOverride, Reason: "o"}),
	)
	s.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	if _, err := s.Lookup(context.Background(), "d.example"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, w := range []string{"level=WARN", "local override applied", "domain=d.example", "policy=may", "lowered=true"} {
		if !strings.Contains(out, w) {
			t.Errorf("log %q lacks %q", out, w)
		}
	}
	buf.Reset()
	s.Policies[1] = answer(Requirement{Level: Secure, Source: SourceOverride, Reason: "o"})
	if _, err := s.Lookup(context.Background(), "d.example"); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "level=INFO") || !strings.Contains(out, "lowered=false") {
		t.Errorf("raising override log: %q", out)
	}
	// A lone override (nothing to override) and non-override results are
	// not logged.
	buf.Reset()
	s.Policies = s.Policies[1:]
	if _, err := s.Lookup(context.Background(), "d.example"); err != nil {
		t.Fatal(err)
	}
	s.Policies = []Policy{answer(Requirement{Level: Verify, Source: SourceMTASTS}), Fixed{Level: May}}
	if _, err := s.Lookup(context.Background(), "d.example"); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("unexpected log: %q", buf.String())
	}
	// A nil Logger discards.
	s.Logger = nil
	s.Policies = []Policy{answer(Requirement{Level: Verify, Source: SourceMTASTS}), answer(Requirement{Level: None, Source: SourceOverride})}
	if r, err := s.Lookup(context.Background(), "d.example"); err != nil || r.Level != None {
		t.Fatal(r, err)
	}
}

// LocalFloor keeps the local administrator's requirement when a published
// policy (or the default) wins the combination, so that "TLS-Required: No"
// (RFC 8689), which may ignore only recipient-side policies, cannot lower
// it (see Requirement.LocalFloor).
func TestStrictestLocalFloor(t *testing.T) {
	tlsa := []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2}}}
	sts := answer(Requirement{Level: Verify, Source: SourceMTASTS, Reason: "sts"})
	tests := []struct {
		name    string
		members []Policy
		source  Source
		level   Level
		floor   Level
	}{
		{"static encrypt under mta-sts enforce", []Policy{sts, answer(Requirement{Level: Encrypt, Source: SourceStatic})}, SourceMTASTS, Verify, Encrypt},
		{"static may under mta-sts", []Policy{sts, answer(Requirement{Level: May, Source: SourceStatic})}, SourceMTASTS, Verify, May},
		{"route encrypt under mta-sts", []Policy{answer(Requirement{Level: Encrypt, Source: SourceRoute}), sts}, SourceMTASTS, Verify, Encrypt},
		{"strictest of several local answers", []Policy{sts, answer(Requirement{Level: May, Source: SourceStatic}),
			answer(Requirement{Level: Encrypt, Source: SourceRoute})}, SourceMTASTS, Verify, Encrypt},
		{"static verify ties mta-sts, earlier wins", []Policy{sts, answer(Requirement{Level: Verify, Source: SourceStatic})}, SourceMTASTS, Verify, Verify},
		{"static encrypt under DANE with records", []Policy{answer(Requirement{Level: Encrypt, Source: SourceStatic}),
			answer(Requirement{Level: DANE, TLSA: tlsa, Source: SourceDANE})}, SourceDANE, DANE, Encrypt},
		{"static encrypt under a default verify", []Policy{answer(Requirement{Level: Verify, Source: SourceDefault}),
			answer(Requirement{Level: Encrypt, Source: SourceStatic})}, SourceDefault, Verify, Encrypt},
		{"the default level is no local floor", []Policy{sts, answer(Requirement{Level: Encrypt, Source: SourceDefault})}, SourceMTASTS, Verify, None},
		{"a testing-mode static entry is no floor", []Policy{sts, answer(Requirement{Level: Encrypt, Mode: Testing, Source: SourceStatic})}, SourceMTASTS, Verify, None},
		{"a local winner carries its level in Level", []Policy{sts, answer(Requirement{Level: Secure, Source: SourceStatic})}, SourceStatic, Secure, None},
		{"an override decides alone", []Policy{sts, answer(Requirement{Level: Encrypt, Source: SourceStatic}),
			answer(Requirement{Level: May, Source: SourceOverride})}, SourceOverride, May, None},
		{"nested combination passes its floor on", []Policy{sts, Combine(answer(Requirement{Level: Encrypt, Source: SourceDefault}),
			answer(Requirement{Level: Encrypt, Source: SourceStatic}))}, SourceMTASTS, Verify, Encrypt},
		{"nested floor under a published winner", []Policy{answer(Requirement{Level: DANE, TLSA: tlsa, Source: SourceDANE}),
			Combine(sts, answer(Requirement{Level: Encrypt, Source: SourceStatic}))}, SourceDANE, DANE, Encrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Combine(tt.members...).Lookup(context.Background(), "d.example")
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != tt.source || got.Level != tt.level || got.LocalFloor != tt.floor {
				t.Errorf("got %s from %s, local floor %s; want %s from %s, local floor %s",
					got.Level, got.Source, got.LocalFloor, tt.level, tt.source, tt.floor)
			}
		})
	}
}
