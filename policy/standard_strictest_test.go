package policy

import (
	"bytes"
	"context"
	"slices"
	"testing"
)

// Strictest gives DANE precedence over an enforced MTA-STS policy
// (RFC 8461 §2) only where DANE applies: the MX hosts without usable TLSA
// records must stay under the MTA-STS policy (WithoutTLSA, its MX patterns),
// as with Standard. Otherwise an attacker who makes the DANE-protected MX
// unreachable pushes delivery to a host without TLSA records, where the
// bare DANE level falls back to May and a stripped STARTTLS yields plaintext.
func TestStrictestKeepsMTASTSForHostsWithoutTLSA(t *testing.T) {
	tlsa := []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{1}, 32)}}
	dane := answer(Requirement{Level: DANE, TLSA: tlsa, MXAuthenticated: true, Source: SourceDANE, Reason: "1 usable TLSA record"})
	stsLines := []string{"version: STSv1", "mode: enforce", "mx: mx.d.example", "max_age: 86400"}
	sts := answer(Requirement{Level: Verify, MXPatterns: []string{"mx.d.example"}, MXAuthenticated: true,
		PolicyString: stsLines, Source: SourceMTASTS, Reason: "mta-sts enforce"})
	for _, order := range [][]Policy{{dane, sts}, {sts, dane}} {
		got, err := Combine(order...).Lookup(context.Background(), "d.example")
		if err != nil {
			t.Fatal(err)
		}
		if got.Level != DANE || got.Source != SourceDANE || len(got.TLSA) == 0 {
			t.Fatalf("got %s, want DANE with its records", got)
		}
		if got.WithoutTLSA != Verify || !slices.Equal(got.MXPatterns, []string{"mx.d.example"}) || !slices.Equal(got.PolicyString, stsLines) {
			t.Errorf("WithoutTLSA %s, MXPatterns %q, PolicyString %q; want the yielded mta-sts policy (verify, its patterns and text)",
				got.WithoutTLSA, got.MXPatterns, got.PolicyString)
		}
	}
}
