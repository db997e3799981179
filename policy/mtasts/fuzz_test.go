package mtasts

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParsePolicy(f *testing.F) {
	f.Add(enforceBody)                                                            // CRLF, wildcard mx
	f.Add("version: STSv1\nmode: testing\nmx: mx.example\nmax_age: 0")            // LF, no final newline
	f.Add("version: STSv1\nmode: none\nmax_age: 31557600\n")                      // none needs no mx
	f.Add("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601")      // above maximum
	f.Add("version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n")         // double wildcard
	f.Add("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nx: wörld\n") // UTF-8 extension
	f.Add("version: STSv1\r\n\r\nmode: enforce\r\n")                              // empty line
	f.Add("\ufeffversion: STSv1\n")                                               // BOM
	f.Add("")                                                                     // empty
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			if !errors.Is(err, ErrPolicySyntax) {
				t.Fatalf("error %v does not wrap ErrPolicySyntax", err)
			}
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("max_age %d out of range", p.MaxAge)
		}
		if p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone {
			t.Fatalf("mode %q", p.Mode)
		}
		if p.Mode != ModeNone && len(p.MX) == 0 {
			t.Fatal("no mx outside mode none")
		}
		for _, mx := range p.MX {
			if mx != strings.ToLower(mx) || !isMXPattern(mx) {
				t.Fatalf("mx %q not normalised", mx)
			}
		}
		// The canonical form parses back to the same policy.
		p2, err := ParsePolicy(p.String())
		if err != nil {
			t.Fatalf("canonical form %q: %v", p.String(), err)
		}
		if p2.String() != p.String() {
			t.Fatalf("round trip changed %q into %q", p.String(), p2.String())
		}
	})
}

func FuzzParseTXT(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;") // the RFC's example
	f.Add("v=STSv1;id=a")                 // no spaces
	f.Add("v=STSv1 ;\tid=a ; ")           // WSP around delimiters
	f.Add("v=STSv1; id=a; ext=1")         // extension
	f.Add("v=STSv1; id=")                 // empty id
	f.Add("v=STSv1; id=a; id=b")          // duplicate id, first wins
	f.Add("v=STSv1; ext=a=b")             // '=' in value
	f.Add("v=spf1 -all")                  // not MTA-STS
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			if !errors.Is(err, ErrRecordSyntax) {
				t.Fatalf("error %v does not wrap ErrRecordSyntax", err)
			}
			return
		}
		if !isID(r.ID) {
			t.Fatalf("invalid id %q accepted", r.ID)
		}
		if !isSTSRecord(s) {
			t.Fatalf("%q parsed but is not a candidate record", s)
		}
		r2, err := ParseRecord(r.String())
		if err != nil || r2.String() != r.String() {
			t.Fatalf("round trip of %q: %v", r.String(), err)
		}
	})
}
