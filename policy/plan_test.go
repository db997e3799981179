package policy_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/plan_matrix.txt and the tables in doc.go")

// The planning matrix: what one MX host gets, for every combination of
//
//   - the administrator's static table entry for the domain (absent or a
//     level), which is also the local floor under a published policy;
//   - the configured default level (may or encrypt);
//   - the domain's MTA-STS policy (none, testing, enforce);
//   - what DANE found for the domain and the host (see daneCases);
//   - the message's "TLS-Required: No" and REQUIRETLS.
//
// The Requirement is composed by policy.Standard from those answers, as in
// production; the plan is NewPlan, CheckRequireTLS and Host. Every
// combination's outcome is in testdata/plan_matrix.txt (reviewed by hand;
// -update rewrites it) and the default-may part is the table in doc.go.
// Invariants that must hold in every cell are checked besides.

var statics = []string{"-", "none", "may", "encrypt", "dane", "dane-only", "verify", "secure"}

var defaults = []policy.Level{policy.May, policy.Encrypt}

var stsModes = []string{"-", "testing", "enforce"}

// daneCase is what DANE found: the DANE member's answer for the domain and
// the state of the host being planned.
type daneCase struct {
	name    string
	member  *policy.Requirement // nil: no DANE member (no DNSSEC resolver)
	perHost bool                // the sender looks up TLSA per host
	host    policy.DANEState
	mxSec   bool // the MX RRset was DNSSEC-validated
}

var tlsa = []policy.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2, 3}}}

var daneCases = []daneCase{
	// Usable TLSA records at the host.
	{"usable", &policy.Requirement{Level: policy.DANE, TLSA: tlsa, MXAuthenticated: true}, true, policy.DANEUsable, true},
	// Only unusable records: TLS without authentication (RFC 7672 §2.2).
	{"unusable", &policy.Requirement{Level: policy.Encrypt, MXAuthenticated: true}, true, policy.DANEUnusable, true},
	// A signed zone without TLSA records: DANE does not apply.
	{"none", &policy.Requirement{Level: policy.May, MXAuthenticated: true}, true, policy.DANENoRecords, true},
	// This host's TLSA lookup failed (bogus); another host's answer made
	// the domain's (no records).
	{"bogus", &policy.Requirement{Level: policy.May, MXAuthenticated: true}, true, policy.DANELookupFailed, true},
	// A dane-only DANE policy found no usable records.
	{"missing", &policy.Requirement{Level: policy.DANEOnly, MXAuthenticated: true}, true, policy.DANEMissing, true},
	// The domain has usable records, but this host (a next hop given as an
	// IP literal) is not looked up.
	{"unchecked", &policy.Requirement{Level: policy.DANE, TLSA: tlsa, MXAuthenticated: true}, true, policy.DANENotLookedUp, true},
	// No DNSSEC-aware resolver: no DANE lookups at all.
	{"off", nil, false, policy.DANENotLookedUp, false},
}

type matrixCell struct {
	static  string
	def     policy.Level
	sts     string
	dane    daneCase
	trn, rt bool
}

func (c matrixCell) requirement(t testing.TB) policy.Requirement {
	answer := func(r *policy.Requirement, src policy.Source) policy.Policy {
		return policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
			if r == nil {
				return policy.Requirement{}, policy.ErrNoPolicy
			}
			a := *r
			a.Domain, a.Source, a.Reason = d, src, string(src)
			return a, nil
		})
	}
	s := &policy.Standard{Default: policy.Fixed{Level: c.def}}
	if c.static != "-" {
		l, err := policy.ParseLevel(c.static)
		if err != nil {
			t.Fatal(err)
		}
		s.Static = answer(&policy.Requirement{Level: l}, policy.SourceStatic)
	}
	if c.sts != "-" {
		mode := policy.Enforce
		if c.sts == "testing" {
			mode = policy.Testing
		}
		s.MTASTS = answer(&policy.Requirement{Level: policy.Verify, Mode: mode, MXPatterns: []string{"mx.example.com"},
			MXAuthenticated: mode == policy.Enforce, PolicyString: []string{"version: STSv1", "mode: " + c.sts}}, policy.SourceMTASTS)
	}
	if c.dane.member != nil {
		s.DANE = answer(c.dane.member, policy.SourceDANE)
	}
	req, err := s.Lookup(context.Background(), "example.com")
	if err != nil {
		t.Fatalf("%v: %v", c, err)
	}
	return req
}

// outcome plans the cell: the hop of mx.example.com in words, or the
// refusal, with what the Connector checks in between.
func (c matrixCell) outcome(req policy.Requirement) (policy.Hop, *policy.Refusal, string) {
	p := policy.NewPlan(req, policy.Message{RequireTLS: c.rt, TLSRequiredNo: c.trn}, c.dane.perHost)
	if p.Refused != nil {
		return policy.Hop{}, p.Refused, refusalWord(p.Refused)
	}
	if r := p.CheckRequireTLS(c.dane.mxSec, false, []policy.DANEState{c.dane.host}); r != nil {
		return policy.Hop{}, r, refusalWord(r)
	}
	if use, _ := p.AllowsMX("mx.example.com"); !use {
		return policy.Hop{}, nil, "mx refused"
	}
	h, r := p.Host(policy.Host{Name: "mx.example.com", DANE: c.dane.host, HasAddrs: true, Reason: "test"})
	if r != nil {
		return h, r, refusalWord(r)
	}
	return h, nil, hopWord(h)
}

func refusalWord(r *policy.Refusal) string {
	switch r.Kind {
	case policy.RefuseDANE:
		return "✗dane"
	case policy.RefuseLookup:
		return "✗dnssec"
	case policy.RefuseAddress:
		return "✗addr"
	case policy.RefuseREQUIRETLS:
		return "✗requiretls"
	}
	return "✗?"
}

// hopWord is a hop in a few letters: plain, may or tls, then the check,
// then "?" when the check is only reported (testing mode).
func hopWord(h policy.Hop) string {
	w := "tls"
	switch {
	case !h.TryTLS:
		return "plain"
	case !h.Required:
		w = "may"
	}
	if h.Check != policy.CheckNone {
		w += "+" + h.Check.String()
		if !h.Enforce {
			w += "?"
		}
	}
	return w
}

func allCells() []matrixCell {
	var out []matrixCell
	for _, rt := range []bool{false, true} {
		for _, trn := range []bool{false, true} {
			for _, def := range defaults {
				for _, st := range statics {
					for _, sts := range stsModes {
						for _, d := range daneCases {
							out = append(out, matrixCell{st, def, sts, d, trn, rt})
						}
					}
				}
			}
		}
	}
	return out
}

func TestPlanMatrix(t *testing.T) {
	var full strings.Builder
	fmt.Fprintf(&full, "# static default mta-sts dane tls-required-no requiretls => requirement => hop\n")
	words := map[matrixCell]string{}
	for _, c := range allCells() {
		req := c.requirement(t)
		hop, ref, w := c.outcome(req)
		words[c] = w
		fmt.Fprintf(&full, "%-9s %-7s %-7s %-9s trn=%-5v rt=%-5v => %-9s %-8s %-7s floor=%-7s local=%-7s => %s\n",
			c.static, c.def, c.sts, c.dane.name, c.trn, c.rt, req.Level, req.Source, req.Mode, req.Floor, req.LocalLevel(), w)
		checkInvariants(t, c, req, hop, ref)
	}
	golden(t, "testdata/plan_matrix.txt", full.String())

	var doc strings.Builder
	for _, tab := range []struct {
		title   string
		trn, rt bool
	}{
		{"A plain message:", false, false},
		{`With "TLS-Required: No" (RFC 8689 §5):`, true, false},
		{"With REQUIRETLS (RFC 8689 §4):", false, true},
	} {
		fmt.Fprintf(&doc, "%s\n\n", tab.title)
		fmt.Fprintf(&doc, "\t%-9s %-7s", "static", "mta-sts")
		for _, d := range daneCases {
			fmt.Fprintf(&doc, " %-11s", d.name)
		}
		doc.WriteString("\n")
		for _, st := range statics {
			for _, sts := range stsModes {
				fmt.Fprintf(&doc, "\t%-9s %-7s", st, sts)
				for _, d := range daneCases {
					fmt.Fprintf(&doc, " %-11s", words[matrixCell{st, policy.May, sts, d, tab.trn, tab.rt}])
				}
				doc.WriteString("\n")
			}
		}
		doc.WriteString("\n")
	}
	docTable(t, strings.TrimSuffix(doc.String(), "\n"))
}

// checkInvariants states what must hold in every cell, whatever the
// golden file says.
func checkInvariants(t *testing.T, c matrixCell, req policy.Requirement, hop policy.Hop, ref *policy.Refusal) {
	t.Helper()
	if ref != nil {
		if c.rt && ref.Kind == policy.RefuseREQUIRETLS || ref.Kind != policy.RefuseREQUIRETLS {
			return
		}
		t.Errorf("%+v: REQUIRETLS refusal for a message without REQUIRETLS", c)
		return
	}
	local := policy.None
	if c.static != "-" {
		local, _ = policy.ParseLevel(c.static)
	}
	// REQUIRETLS (RFC 8689 §4.2.1): TLS, enforced, and a verified
	// certificate; never relaxed by the header.
	if c.rt && (!hop.Required || !hop.Enforce || hop.Check == policy.CheckNone) {
		t.Errorf("%+v: REQUIRETLS message planned as %s", c, hopWord(hop))
	}
	// What the administrator requires is never lowered: an encrypt (or
	// stronger, bar DANE's fallback) local entry means no plaintext.
	if (local == policy.Encrypt || local >= policy.DANEOnly) && !hop.Required {
		t.Errorf("%+v: local %s planned as %s", c, local, hopWord(hop))
	}
	// A local verify or secure is checked as such, enforced; DANE does not
	// replace it.
	if local.VerifiesPKIX() && !(hop.Check == policy.CheckVerify || hop.Check == policy.CheckSecure) {
		t.Errorf("%+v: local %s planned as %s", c, local, hopWord(hop))
	}
	// An enforced MTA-STS policy: the certificate is verified (PKIX or
	// DANE) unless the header is honoured.
	if c.sts == "enforce" && !c.trn && (hop.Check == policy.CheckNone || !hop.Enforce) {
		t.Errorf("%+v: enforced mta-sts planned as %s", c, hopWord(hop))
	}
	// Usable TLSA records are checked whenever DANE applies and the header
	// is not honoured.
	if c.dane.host == policy.DANEUsable && !c.trn && local != policy.Verify && local != policy.Secure && hop.Check != policy.CheckDANE {
		t.Errorf("%+v: usable TLSA records planned as %s", c, hopWord(hop))
	}
	// The header never removes TLS from a TLS-requiring local floor and
	// never adds a certificate check of a published policy.
	if c.trn && !c.rt && local < policy.DANE && hop.Check != policy.CheckNone {
		t.Errorf("%+v: TLS-Required: No with local %s planned as %s", c, local, hopWord(hop))
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test ./policy -run TestPlanMatrix -update, then review the diff):\n%s", path, firstDiff(string(want), got))
	}
}

const (
	docBegin = "// The tables show what one MX host gets (TestPlanMatrix keeps these tables in step with the code).\n//\n"
	docEnd   = "// The whole matrix, also with the default level encrypt, is in testdata/plan_matrix.txt.\n"
)

// docTable checks (or with -update rewrites) the tables between the
// markers in doc.go.
func docTable(t *testing.T, table string) {
	t.Helper()
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	i, j := strings.Index(s, docBegin), strings.Index(s, docEnd)
	if i < 0 || j < i {
		t.Fatal("doc.go has no plan matrix markers")
	}
	var b strings.Builder
	for _, line := range strings.Split(table, "\n") {
		b.WriteString(strings.TrimRight("// "+line, " \t") + "\n")
	}
	want := s[:i+len(docBegin)] + b.String() + s[j:]
	if *update {
		if err := os.WriteFile("doc.go", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want != s {
		t.Errorf("doc.go's plan matrix is stale (go test ./policy -run TestPlanMatrix -update):\n%s", firstDiff(s, want))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return ""
}
