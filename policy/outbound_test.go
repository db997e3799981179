package policy_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/mtasts"
)

// noTXT answers every TXT question "no such name" and counts them.
type noTXT struct{ n int }

func (d *noTXT) LookupTXT(_ context.Context, name string) ([]string, error) {
	d.n++
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// Outbound keeps its default what it says it is, the level where the table
// has no entry, also when published policies are enabled: a table entry
// weaker than the default is kept (not raised by a Default floor), an
// MTA-STS domain without a policy falls to the table or the default,
// Default.OnFailure bounce applies to every answer, and a next hop
// "[host]:port" is answered without asking MTA-STS.
func TestOutboundComposition(t *testing.T) {
	table, err := policy.ParseTable(strings.NewReader("legacy.example encrypt\n[hop.example]:587 secure\n"), "tls_policy")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain    string
		onFailure policy.FailureAction
		level     policy.Level
		source    policy.Source
		reason    string
	}{
		{"legacy.example", policy.Defer, policy.Encrypt, policy.SourceStatic, ""},
		{"other.example", policy.Defer, policy.Verify, policy.SourceDefault, "-default-tls verify"},
		{"legacy.example", policy.Bounce, policy.Encrypt, policy.SourceStatic, ""},
		{"other.example", policy.Bounce, policy.Verify, policy.SourceDefault, "-default-tls verify"},
		{"[hop.example]:587", policy.Defer, policy.Secure, policy.SourceStatic, ""},
		{"[other.example]:25", policy.Bounce, policy.Verify, policy.SourceDefault, "-default-tls verify"},
	} {
		dns := &noTXT{}
		p := &policy.Outbound{Table: table, MTASTS: &mtasts.Client{Resolver: dns},
			Default: policy.Fixed{Level: policy.Verify, OnFailure: tc.onFailure}, DefaultReason: "-default-tls verify"}
		req, err := p.Lookup(t.Context(), tc.domain)
		if err != nil {
			t.Fatalf("%s: %v", tc.domain, err)
		}
		if req.Level != tc.level || req.Source != tc.source || req.OnFailure != tc.onFailure {
			t.Errorf("%s with on-failure %v: got %s (%s, on failure %v), want %s from %s",
				tc.domain, tc.onFailure, req.Level, req.Source, req.OnFailure, tc.level, tc.source)
		}
		if tc.reason != "" && !strings.Contains(req.String(), tc.reason) {
			t.Errorf("%s: %q does not name %q", tc.domain, req.String(), tc.reason)
		}
		if asked := dns.n > 0; asked == strings.HasPrefix(tc.domain, "[") {
			t.Errorf("%s: MTA-STS asked %d times", tc.domain, dns.n)
		}
	}
}

// Without a table the default answers everything, with its own reason
// when DefaultReason is empty, and a zero Default is Verify (Fixed's rule).
func TestOutboundDefaultOnly(t *testing.T) {
	req, err := (&policy.Outbound{}).Lookup(t.Context(), "example.com")
	if err != nil || req.Level != policy.Verify || req.Source != policy.SourceDefault || !strings.Contains(req.String(), "default level verify") {
		t.Fatalf("got %v (%v)", req, err)
	}
	req, err = (&policy.Outbound{Default: policy.Fixed{InsecurePlaintext: true}}).LookupLocal(t.Context(), "example.com")
	if err != nil || req.Level != policy.None {
		t.Fatalf("plaintext default: %v (%v)", req, err)
	}
}
