package policy_test

// Discovery failures (RFC 8460 §4.3.2.2) through Standard and Strictest:
// an MTA-STS member that abstains because the published policy could not
// be used (*mtasts.NoPolicyError) does not change the decision, and the
// failure comes out in Requirement.DiscoveryFailures.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/mtasts"
)

func abstain(err error) policy.Policy {
	return policy.Func(func(context.Context, string) (policy.Requirement, error) { return policy.Requirement{}, err })
}

func answerWith(r policy.Requirement) policy.Policy {
	return policy.Func(func(context.Context, string) (policy.Requirement, error) { return r, nil })
}

func noPolicy(published bool, err error) error {
	return &mtasts.NoPolicyError{Domain: "d.example", Published: published, Err: err}
}

func TestStandardCarriesMTASTSDiscoveryFailure(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string // result type, "" for no failure
	}{
		{"fetch error", noPolicy(true, fmt.Errorf("%w: HTTP status %q, want 200", mtasts.ErrPolicyFetch, "404 Not Found")), "sts-policy-fetch-error"},
		{"webpki", noPolicy(true, fmt.Errorf("%w: x509: certificate signed by unknown authority", mtasts.ErrWebPKI)), "sts-webpki-invalid"},
		{"invalid policy", noPolicy(true, fmt.Errorf("%w: bad mode", mtasts.ErrPolicySyntax)), "sts-policy-invalid"},
		{"too large", noPolicy(true, mtasts.ErrPolicyTooLarge), "sts-policy-invalid"},
		{"no record", noPolicy(false, mtasts.ErrNoRecord), ""},
		{"dns failure", noPolicy(false, mtasts.ErrDNS), ""},
		{"mode none", noPolicy(true, mtasts.ErrModeNone), ""},
		{"plain ErrNoPolicy", policy.ErrNoPolicy, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &policy.Standard{MTASTS: abstain(tc.err), Default: policy.Fixed{Level: policy.May}}
			r, err := s.Lookup(context.Background(), "d.example")
			if err != nil {
				t.Fatal(err)
			}
			// The decision is the one without a policy (RFC 8461 §5).
			if r.Level != policy.May || r.Source != policy.SourceDefault {
				t.Errorf("decision %s, want the default may", r)
			}
			if tc.want == "" {
				if r.DiscoveryFailures != nil || strings.Contains(r.Reason, "discovery failed") {
					t.Errorf("failures %+v, reason %q, want none", r.DiscoveryFailures, r.Reason)
				}
				return
			}
			if len(r.DiscoveryFailures) != 1 {
				t.Fatalf("failures %+v, want one", r.DiscoveryFailures)
			}
			f := r.DiscoveryFailures[0]
			if f.PolicyType != "sts" || string(f.ResultType) != tc.want || f.Detail != tc.err.Error() || f.PolicyString != nil || f.MXPatterns != nil {
				t.Errorf("failure %+v", f)
			}
			if !strings.Contains(r.Reason, "sts policy discovery failed: "+tc.want+" (reported)") {
				t.Errorf("reason %q does not name the failure", r.Reason)
			}
		})
	}
}

// The failure is carried whoever decides: a static entry, DANE over a
// cached MTA-STS answer, the strict default when nothing answers.
func TestStandardDiscoveryFailureWhoeverDecides(t *testing.T) {
	fetchErr := noPolicy(true, fmt.Errorf("%w: connection refused", mtasts.ErrPolicyFetch))
	t.Run("static entry", func(t *testing.T) {
		s := &policy.Standard{MTASTS: abstain(fetchErr), Static: answerWith(policy.Requirement{Domain: "d.example", Level: policy.Encrypt, Source: policy.SourceStatic}),
			Default: policy.Fixed{Level: policy.May}}
		r, err := s.Lookup(context.Background(), "d.example")
		if err != nil {
			t.Fatal(err)
		}
		if r.Level != policy.Encrypt || r.Source != policy.SourceStatic || len(r.DiscoveryFailures) != 1 ||
			r.DiscoveryFailures[0].ResultType != "sts-policy-fetch-error" {
			t.Errorf("got %s, failures %+v", r, r.DiscoveryFailures)
		}
	})
	t.Run("nothing answers", func(t *testing.T) {
		s := &policy.Standard{MTASTS: abstain(fetchErr), Default: abstain(policy.ErrNoPolicy)}
		r, err := s.Lookup(context.Background(), "d.example")
		if err != nil {
			t.Fatal(err)
		}
		if r.Level != policy.Verify || len(r.DiscoveryFailures) != 1 || !strings.Contains(r.Reason, "sts-policy-fetch-error") {
			t.Errorf("got %s, failures %+v", r, r.DiscoveryFailures)
		}
	})
	t.Run("DANE over a cached policy whose refresh failed", func(t *testing.T) {
		lines := []string{"version: STSv1", "mode: enforce", "mx: mx.d.example", "max_age: 86400"}
		cached := policy.Requirement{Domain: "d.example", Level: policy.Verify, MXPatterns: []string{"mx.d.example"},
			MXAuthenticated: true, Source: policy.SourceMTASTS, PolicyString: lines, Reason: "mta-sts id=1",
			DiscoveryFailures: []policy.DiscoveryFailure{{PolicyType: "sts", ResultType: "sts-webpki-invalid",
				Detail: "cached policy id=1 applied", PolicyString: lines, MXPatterns: []string{"mx.d.example"}}}}
		tlsa := []policy.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{1}, 32)}}
		s := &policy.Standard{
			DANE:    answerWith(policy.Requirement{Domain: "d.example", Level: policy.DANE, TLSA: tlsa, Source: policy.SourceDANE}),
			MTASTS:  answerWith(cached),
			Default: policy.Fixed{Level: policy.May},
		}
		r, err := s.Lookup(context.Background(), "d.example")
		if err != nil {
			t.Fatal(err)
		}
		if r.Source != policy.SourceDANE || len(r.DiscoveryFailures) != 1 ||
			!slices.Equal(r.DiscoveryFailures[0].PolicyString, lines) || r.DiscoveryFailures[0].ResultType != "sts-webpki-invalid" {
			t.Fatalf("got %s, failures %+v", r, r.DiscoveryFailures)
		}
		if !strings.Contains(r.Reason, "cached policy kept") {
			t.Errorf("reason %q", r.Reason)
		}
		// The result shares no slices with the member's answer.
		r.DiscoveryFailures[0].PolicyString[0] = "changed"
		r.DiscoveryFailures[0].MXPatterns[0] = "changed"
		if cached.DiscoveryFailures[0].PolicyString[0] != "version: STSv1" || cached.DiscoveryFailures[0].MXPatterns[0] != "mx.d.example" {
			t.Errorf("result aliases the member's answer: %+v", cached.DiscoveryFailures)
		}
	})
	t.Run("DANE over a cached testing policy whose refresh failed", func(t *testing.T) {
		// Standard sets a testing MTA-STS answer aside under DANE (RFC 8461
		// §2); its failure must not go with it.
		lines := []string{"version: STSv1", "mode: testing", "mx: mx.d.example", "max_age: 86400"}
		cached := policy.Requirement{Domain: "d.example", Level: policy.Verify, Mode: policy.Testing, MXPatterns: []string{"mx.d.example"},
			Source: policy.SourceMTASTS, PolicyString: lines,
			DiscoveryFailures: []policy.DiscoveryFailure{{PolicyType: "sts", ResultType: "sts-policy-invalid", PolicyString: lines}}}
		tlsa := []policy.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{1}, 32)}}
		s := &policy.Standard{
			DANE:    answerWith(policy.Requirement{Domain: "d.example", Level: policy.DANE, TLSA: tlsa, Source: policy.SourceDANE}),
			MTASTS:  answerWith(cached),
			Default: policy.Fixed{Level: policy.May},
		}
		r, err := s.Lookup(context.Background(), "d.example")
		if err != nil {
			t.Fatal(err)
		}
		if r.Source != policy.SourceDANE || r.Mode != policy.Enforce || len(r.DiscoveryFailures) != 1 ||
			r.DiscoveryFailures[0].ResultType != "sts-policy-invalid" {
			t.Errorf("got %s, failures %+v", r, r.DiscoveryFailures)
		}
	})
	t.Run("no failure leaves the field nil", func(t *testing.T) {
		s := &policy.Standard{MTASTS: abstain(noPolicy(false, mtasts.ErrNoRecord)), Default: policy.Fixed{Level: policy.May}}
		r, err := s.Lookup(context.Background(), "d.example")
		if err != nil || r.DiscoveryFailures != nil {
			t.Errorf("got %v, failures %#v", err, r.DiscoveryFailures)
		}
	})
	t.Run("a lookup error still wins", func(t *testing.T) {
		boom := errors.New("servfail")
		s := &policy.Standard{MTASTS: abstain(fetchErr), DANE: abstain(boom), Default: policy.Fixed{Level: policy.May}}
		if _, err := s.Lookup(context.Background(), "d.example"); !errors.Is(err, boom) {
			t.Errorf("err = %v, want the DANE error (defer, never downgrade)", err)
		}
	})
}

func TestStrictestCarriesDiscoveryFailures(t *testing.T) {
	fetchErr := noPolicy(true, fmt.Errorf("%w: HTTP status 404", mtasts.ErrPolicyFetch))
	t.Run("with an answer", func(t *testing.T) {
		s := policy.Combine(abstain(fetchErr), policy.Fixed{Level: policy.Encrypt})
		r, err := s.Lookup(context.Background(), "d.example")
		if err != nil {
			t.Fatal(err)
		}
		if r.Level != policy.Encrypt || len(r.DiscoveryFailures) != 1 || r.DiscoveryFailures[0].ResultType != "sts-policy-fetch-error" {
			t.Errorf("got %s, failures %+v", r, r.DiscoveryFailures)
		}
	})
	t.Run("every member abstains", func(t *testing.T) {
		s := policy.Combine(abstain(fetchErr), abstain(policy.ErrNoPolicy))
		_, err := s.Lookup(context.Background(), "d.example")
		if !errors.Is(err, policy.ErrNoPolicy) {
			t.Fatalf("err = %v, want ErrNoPolicy", err)
		}
		if !strings.Contains(err.Error(), `no member has a policy for "d.example"`) {
			t.Errorf("message %q", err)
		}
		var npe *mtasts.NoPolicyError
		if !errors.As(err, &npe) || !errors.Is(err, mtasts.ErrPolicyFetch) {
			t.Errorf("err %v does not wrap the member's error", err)
		}
		fs := policy.DiscoveryFailuresOf(err)
		if len(fs) != 1 || fs[0].PolicyType != "sts" || fs[0].ResultType != "sts-policy-fetch-error" || fs[0].Detail != fetchErr.Error() {
			t.Errorf("DiscoveryFailuresOf = %+v", fs)
		}
		// Nested in Standard, the abstaining Strictest's failure survives.
		std := &policy.Standard{MTASTS: s, Default: policy.Fixed{Level: policy.May}}
		r, err := std.Lookup(context.Background(), "d.example")
		if err != nil || len(r.DiscoveryFailures) != 1 || r.Level != policy.May {
			t.Errorf("nested: %v %s %+v", err, r, r.DiscoveryFailures)
		}
	})
	t.Run("the same failure twice is reported once", func(t *testing.T) {
		inner := &policy.Standard{MTASTS: abstain(fetchErr), Default: policy.Fixed{Level: policy.May}}
		s := policy.Combine(inner, inner, abstain(fetchErr))
		r, err := s.Lookup(context.Background(), "d.example")
		if err != nil || len(r.DiscoveryFailures) != 1 {
			t.Errorf("got %v, failures %+v, want one", err, r.DiscoveryFailures)
		}
	})
}

// emptyDiscovery is a DiscoveryError with nothing to report.
type emptyDiscovery struct{ cause error }

func (e emptyDiscovery) Error() string                                    { return "empty: " + e.cause.Error() }
func (e emptyDiscovery) Unwrap() error                                    { return e.cause }
func (e emptyDiscovery) TLSRPTResult() (pt string, rt policy.FailureType) { return "sts", "" }

var _ policy.DiscoveryError = emptyDiscovery{}

func TestDiscoveryFailuresOf(t *testing.T) {
	fetch := noPolicy(true, mtasts.ErrPolicyFetch)
	webpki := noPolicy(true, mtasts.ErrWebPKI)
	if fs := policy.DiscoveryFailuresOf(nil); fs != nil {
		t.Errorf("nil error: %+v", fs)
	}
	if fs := policy.DiscoveryFailuresOf(errors.New("plain")); fs != nil {
		t.Errorf("plain error: %+v", fs)
	}
	fs := policy.DiscoveryFailuresOf(fmt.Errorf("outer: %w", errors.Join(fetch, errors.New("other"), webpki)))
	if len(fs) != 2 || fs[0].ResultType != "sts-policy-fetch-error" || fs[1].ResultType != "sts-webpki-invalid" {
		t.Errorf("joined: %+v", fs)
	}
	// An error with nothing to report is looked through: what it wraps
	// may report something.
	fs = policy.DiscoveryFailuresOf(emptyDiscovery{cause: fetch})
	if len(fs) != 1 || fs[0].ResultType != "sts-policy-fetch-error" {
		t.Errorf("through an empty DiscoveryError: %+v", fs)
	}
	if fs := policy.DiscoveryFailuresOf(emptyDiscovery{cause: errors.New("x")}); fs != nil {
		t.Errorf("empty DiscoveryError: %+v", fs)
	}
}
