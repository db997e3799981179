package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// The precedence table of Standard: each row is what DANE, MTA-STS, the
// static table and the default answer, and the decision that must come out.
func TestStandardPrecedence(t *testing.T) {
	tlsa := []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{1}, 32)}}
	daneRecords := answer(Requirement{Domain: "d.example", Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "MX mx.d.example: 1 usable TLSA records"})
	daneNone := answer(Requirement{Domain: "d.example", Level: May, MXAuthenticated: true, Source: SourceDANE, Reason: "no usable DNSSEC-authenticated TLSA records"})
	daneUnusable := answer(Requirement{Domain: "d.example", Level: Encrypt, MXAuthenticated: true, Source: SourceDANE, Reason: "only unusable TLSA records"})
	daneOnlyNone := answer(Requirement{Domain: "d.example", Level: DANEOnly, Source: SourceDANE, Reason: "no usable DNSSEC-authenticated TLSA records"})
	stsLines := []string{"version: STSv1", "mode: enforce", "mx: mx.d.example", "max_age: 86400"}
	stsEnforce := answer(Requirement{Domain: "d.example", Level: Verify, MXPatterns: []string{"mx.d.example"}, MXAuthenticated: true,
		PolicyString: stsLines, Source: SourceMTASTS, Reason: "mta-sts id=1 mode=enforce"})
	stsTesting := answer(Requirement{Domain: "d.example", Level: Verify, MXPatterns: []string{"mx.d.example"}, Mode: Testing,
		PolicyString: stsLines, Source: SourceMTASTS, Reason: "mta-sts id=1 mode=testing"})
	static := func(l Level) Policy {
		return answer(Requirement{Domain: "d.example", Level: l, Source: SourceStatic, Reason: "line 1"})
	}
	override := func(l Level) Policy {
		return answer(Requirement{Domain: "d.example", Level: l, Source: SourceOverride, Reason: "line 2 override=yes"})
	}
	boom := errors.New("SERVFAIL")
	tests := []struct {
		name                  string
		s                     Standard
		level                 Level
		source                Source
		mode                  Mode
		floor                 Level
		tlsa, mxAuth, strings bool
		why                   string
		err                   error
		warn                  bool
	}{
		{name: "nothing configured: strict verify", s: Standard{}, level: Verify, source: SourceDefault, why: "default level"},
		{name: "default alone", s: Standard{Default: Fixed{Level: May}}, level: May, source: SourceDefault},
		{name: "DANE over MTA-STS when TLSA exist", s: Standard{DANE: daneRecords, MTASTS: stsEnforce, Default: Fixed{Level: May}},
			level: DANE, source: SourceDANE, tlsa: true, mxAuth: true, strings: true, why: "DANE takes precedence, RFC 8461 §2"},
		{name: "DANE over MTA-STS testing too", s: Standard{DANE: daneRecords, MTASTS: stsTesting, Default: Fixed{Level: May}},
			level: DANE, source: SourceDANE, tlsa: true, mxAuth: true, why: "yields to DANE"},
		{name: "no TLSA: DANE abstains, MTA-STS applies", s: Standard{DANE: daneNone, MTASTS: stsEnforce, Default: Fixed{Level: May}},
			level: Verify, source: SourceMTASTS, mxAuth: true, strings: true, why: "dane does not apply"},
		{name: "only unusable TLSA: encrypt raises may", s: Standard{DANE: daneUnusable, Default: Fixed{Level: May}},
			level: Encrypt, source: SourceDANE, mxAuth: true},
		{name: "dane-only without records competes (and fails in the Connector)", s: Standard{DANE: daneOnlyNone, Default: Fixed{Level: May}},
			level: DANEOnly, source: SourceDANE},
		{name: "static may cannot lower MTA-STS", s: Standard{MTASTS: stsEnforce, Static: static(May), Default: Fixed{Level: May}},
			level: Verify, source: SourceMTASTS, mxAuth: true, strings: true},
		{name: "static encrypt cannot lower DANE", s: Standard{DANE: daneRecords, Static: static(Encrypt), Default: Fixed{Level: May}},
			level: DANE, source: SourceDANE, tlsa: true, mxAuth: true},
		{name: "static verify ties MTA-STS: published policy reported", s: Standard{MTASTS: stsEnforce, Static: static(Verify), Default: Fixed{Level: May}},
			level: Verify, source: SourceMTASTS, mxAuth: true, strings: true},
		{name: "static secure raises MTA-STS, keeps its MX patterns", s: Standard{MTASTS: stsEnforce, Static: static(Secure), Default: Fixed{Level: May}},
			level: Secure, source: SourceStatic, mxAuth: true, strings: true},
		{name: "static secure outranks DANE", s: Standard{DANE: daneRecords, Static: static(Secure), Default: Fixed{Level: May}},
			level: Secure, source: SourceStatic, mxAuth: true},
		{name: "override lowers MTA-STS and is logged", s: Standard{MTASTS: stsEnforce, Static: override(May), Default: Fixed{Level: May}},
			level: May, source: SourceOverride, why: "(overridden)", warn: true},
		{name: "testing policy checked over default may", s: Standard{MTASTS: stsTesting, Default: Fixed{Level: May}},
			level: Verify, source: SourceMTASTS, mode: Testing, floor: May, strings: true, why: "checked and reported"},
		{name: "testing policy keeps the encrypt floor", s: Standard{MTASTS: stsTesting, Static: static(Encrypt), Default: Fixed{Level: May}},
			level: Verify, source: SourceMTASTS, mode: Testing, floor: Encrypt, strings: true, why: "static encrypt enforced meanwhile"},
		{name: "testing policy weaker than enforced static", s: Standard{MTASTS: stsTesting, Static: static(Secure), Default: Fixed{Level: May}},
			level: Secure, source: SourceStatic, why: "(testing, not enforced)"},
		// A testing policy is checked over an enforced floor that Floor can
		// express (a TLS requirement). dane-only cannot be expressed that way:
		// replaced, it would leave hosts without TLSA records to unauthenticated
		// TLS, which an active attacker accepts with any certificate.
		{name: "dane-only is not replaced by a testing MTA-STS policy", s: Standard{DANE: daneOnlyNone, MTASTS: stsTesting, Default: Fixed{Level: May}},
			level: DANEOnly, source: SourceDANE, why: "(testing, not enforced)"},
		{name: "static dane-only is not replaced by a testing MTA-STS policy", s: Standard{MTASTS: stsTesting, Static: static(DANEOnly), Default: Fixed{Level: May}},
			level: DANEOnly, source: SourceStatic, why: "(testing, not enforced)"},
		{name: "DANE lookup failure defers", s: Standard{DANE: failing(boom), MTASTS: stsEnforce, Default: Fixed{Level: May}}, err: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			tt.s.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
			got, err := tt.s.Lookup(context.Background(), "d.example")
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Level != tt.level || got.Source != tt.source || got.Mode != tt.mode || got.Floor != tt.floor {
				t.Errorf("got %s %s %s floor %s, want %s %s %s floor %s", got.Level, got.Source, got.Mode, got.Floor,
					tt.level, tt.source, tt.mode, tt.floor)
			}
			if (len(got.TLSA) > 0) != tt.tlsa || got.MXAuthenticated != tt.mxAuth || (len(got.PolicyString) > 0) != tt.strings {
				t.Errorf("TLSA %d, MXAuthenticated %v, PolicyString %q; want TLSA %v, %v, %v",
					len(got.TLSA), got.MXAuthenticated, got.PolicyString, tt.tlsa, tt.mxAuth, tt.strings)
			}
			if tt.strings && len(got.MXPatterns) == 0 {
				t.Errorf("MTA-STS policy applied without its MX patterns")
			}
			line := got.String()
			if strings.Contains(line, "\n") || !strings.HasPrefix(line, "d.example: "+tt.level.String()) {
				t.Errorf("String() = %q, want one line starting with the level", line)
			}
			if tt.why != "" && !strings.Contains(got.Reason, tt.why) {
				t.Errorf("Reason %q lacks %q", got.Reason, tt.why)
			}
			if w := strings.Contains(logBuf.String(), "level=WARN"); w != tt.warn {
				t.Errorf("override warning logged = %v, want %v: %s", w, tt.warn, logBuf.String())
			}
		})
	}
}

func TestStandardStringExplainsFloor(t *testing.T) {
	s := Standard{
		MTASTS:  answer(Requirement{Domain: "d.example", Level: Verify, Mode: Testing, Source: SourceMTASTS, Reason: "mta-sts id=1 mode=testing"}),
		Default: Fixed{Level: Encrypt},
	}
	got, err := s.Lookup(context.Background(), "d.example")
	if err != nil {
		t.Fatal(err)
	}
	if want := "d.example: verify (mta-sts: mta-sts id=1 mode=testing; testing mode"; !strings.HasPrefix(got.String(), want) ||
		!strings.Contains(got.String(), "testing mode (encrypt enforced)") {
		t.Errorf("String() = %q", got.String())
	}
}

// DANE wins over an enforced MTA-STS policy only where it applies: the
// decision keeps the MTA-STS policy for MX hosts without usable TLSA.
func TestStandardDANEKeepsMTASTSForOtherHosts(t *testing.T) {
	tlsa := []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{1}, 32)}}
	s := Standard{
		DANE: answer(Requirement{Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "MX a: 1 usable"}),
		MTASTS: answer(Requirement{Level: Verify, MXPatterns: []string{"*.d.example"}, MXAuthenticated: true,
			PolicyString: []string{"version: STSv1"}, Source: SourceMTASTS, Reason: "mta-sts"}),
		Default: Fixed{Level: May},
	}
	got, err := s.Lookup(context.Background(), "d.example")
	if err != nil {
		t.Fatal(err)
	}
	if got.Level != DANE || got.WithoutTLSA != Verify || len(got.MXPatterns) != 1 || len(got.PolicyString) != 1 {
		t.Errorf("got %s WithoutTLSA %s patterns %v strings %v", got.Level, got.WithoutTLSA, got.MXPatterns, got.PolicyString)
	}
	// A testing policy is not kept.
	s.MTASTS = answer(Requirement{Level: Verify, Mode: Testing, MXPatterns: []string{"*.d.example"}, Source: SourceMTASTS})
	got, err = s.Lookup(context.Background(), "d.example")
	if err != nil {
		t.Fatal(err)
	}
	if got.WithoutTLSA != None || len(got.MXPatterns) != 0 {
		t.Errorf("testing policy kept: %+v", got)
	}
}

// Standard carries the static table's level in LocalFloor whenever a
// published policy or the default wins, including when a testing-mode
// policy replaces the enforced result (see Requirement.LocalFloor).
func TestStandardLocalFloor(t *testing.T) {
	tlsa := []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{1}, 32)}}
	daneRecords := answer(Requirement{Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "records"})
	stsEnforce := answer(Requirement{Level: Verify, MXPatterns: []string{"mx.d.example"}, MXAuthenticated: true, Source: SourceMTASTS, Reason: "sts"})
	stsTesting := answer(Requirement{Level: Verify, MXPatterns: []string{"mx.d.example"}, Mode: Testing, Source: SourceMTASTS, Reason: "sts testing"})
	table := func(text string) Policy { return mustTable(t, text) }
	tests := []struct {
		name   string
		s      Standard
		source Source
		level  Level
		floor  Level
	}{
		{"static encrypt under mta-sts enforce", Standard{MTASTS: stsEnforce, Static: table("d.example encrypt\n"), Default: Fixed{Level: May}},
			SourceMTASTS, Verify, Encrypt},
		{"static may under mta-sts enforce", Standard{MTASTS: stsEnforce, Static: table("d.example may\n"), Default: Fixed{Level: May}},
			SourceMTASTS, Verify, May},
		{"no static entry", Standard{MTASTS: stsEnforce, Static: table("other.example encrypt\n"), Default: Fixed{Level: Encrypt}},
			SourceMTASTS, Verify, None},
		{"the table's * entry is a default, no floor", Standard{MTASTS: stsEnforce, Static: table("* encrypt\n"), Default: Fixed{Level: May}},
			SourceMTASTS, Verify, None},
		{"static verify ties mta-sts", Standard{MTASTS: stsEnforce, Static: table("d.example verify\n"), Default: Fixed{Level: May}},
			SourceMTASTS, Verify, Verify},
		{"static encrypt under DANE", Standard{DANE: daneRecords, MTASTS: stsEnforce, Static: table("d.example encrypt\n"), Default: Fixed{Level: May}},
			SourceDANE, DANE, Encrypt},
		{"static encrypt under a stricter default", Standard{Static: table("d.example encrypt\n"), Default: Fixed{Level: Verify}},
			SourceDefault, Verify, Encrypt},
		{"testing policy over a static floor", Standard{MTASTS: stsTesting, Static: table("d.example encrypt\n"), Default: Fixed{Level: May}},
			SourceMTASTS, Verify, Encrypt},
		{"static winner: Level is the local requirement", Standard{MTASTS: stsEnforce, Static: table("d.example secure\n"), Default: Fixed{Level: May}},
			SourceStatic, Secure, None},
		{"override decides alone", Standard{MTASTS: stsEnforce, Static: table("d.example may override=yes\n"), Default: Fixed{Level: May}},
			SourceOverride, May, None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.Lookup(context.Background(), "d.example")
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
