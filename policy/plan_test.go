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

// defaults are the configured default levels; None is Fixed's
// InsecurePlaintext.
var defaults = []policy.Level{policy.None, policy.May, policy.Encrypt}

var stsModes = []string{"-", "testing", "enforce"}

// daneCase is what DANE found: the DANE member's answer for the domain and
// the state of the host being planned.
type daneCase struct {
	name    string
	member  *policy.Requirement // nil: no DANE member (no DNSSEC resolver)
	perHost bool                // the sender looks up TLSA per host
	host    policy.DANEState
	mxSec   bool // the MX RRset was DNSSEC-validated
	noAddrs bool // the host's address lookup failed too
	// others are the states of the domain's other MX hosts.
	others []policy.DANEState
}

var tlsa = []policy.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2, 3}}}

var (
	daneUsable   = &policy.Requirement{Level: policy.DANE, TLSA: tlsa, MXAuthenticated: true}
	daneUnusable = &policy.Requirement{Level: policy.Encrypt, MXAuthenticated: true}
	daneNone     = &policy.Requirement{Level: policy.May, MXAuthenticated: true}
	daneMissing  = &policy.Requirement{Level: policy.DANEOnly, MXAuthenticated: true}
)

var daneCases = []daneCase{
	// Usable TLSA records at the host.
	{name: "usable", member: daneUsable, perHost: true, host: policy.DANEUsable, mxSec: true},
	// Only unusable records: TLS without authentication (RFC 7672 §2.2).
	{name: "unusable", member: daneUnusable, perHost: true, host: policy.DANEUnusable, mxSec: true},
	// A signed zone without TLSA records: DANE does not apply.
	{name: "none", member: daneNone, perHost: true, host: policy.DANENoRecords, mxSec: true},
	// This host's TLSA lookup failed (bogus); another host's answer made
	// the domain's (no records).
	{name: "bogus", member: daneNone, perHost: true, host: policy.DANELookupFailed, mxSec: true},
	// A dane-only DANE policy found no usable records.
	{name: "missing", member: daneMissing, perHost: true, host: policy.DANEMissing, mxSec: true},
	// Another MX host has usable records, this one none.
	{name: "mixed", member: daneUsable, perHost: true, host: policy.DANENoRecords, mxSec: true, others: []policy.DANEState{policy.DANEUsable}},
	// This host's address and TLSA lookups failed.
	{name: "bogus-addr", member: daneNone, perHost: true, host: policy.DANELookupFailed, mxSec: true, noAddrs: true},
	// The domain has usable records, but this host (a next hop given as an
	// IP literal) is not looked up.
	{name: "unchecked", member: daneUsable, perHost: true, host: policy.DANENotLookedUp, mxSec: true},
	// The policy has DANE records but the sender looks up no TLSA per
	// host (a dane.Policy in policy.Standard, none in the Connector).
	{name: "unwired", member: daneUsable, host: policy.DANENotLookedUp},
	// No DNSSEC-aware resolver: no DANE lookups at all.
	{name: "off", host: policy.DANENotLookedUp},
}

// docDANE are the DANE cases of the tables in doc.go.
var docDANE = []daneCase{daneCases[0], daneCases[1], daneCases[2], daneCases[5], daneCases[3], daneCases[4], daneCases[9]}

// handMade are requirements that policy.Standard does not build but a
// Policy of one's own may return, planned with every DANE case too.
var handMade = []struct {
	name string
	req  policy.Requirement
}{
	{"testing-verify/floor-dane-only", policy.Requirement{Level: policy.Verify, Source: policy.SourceMTASTS, Mode: policy.Testing, Floor: policy.DANEOnly}},
	{"testing-verify/floor-none", policy.Requirement{Level: policy.Verify, Source: policy.SourceMTASTS, Mode: policy.Testing}},
	{"dane/without-tlsa-verify", policy.Requirement{Level: policy.DANE, Source: policy.SourceDANE, WithoutTLSA: policy.Verify}},
	{"dane-only+tlsa", policy.Requirement{Level: policy.DANEOnly, Source: policy.SourceDANE, TLSA: tlsa}},
	{"override-may", policy.Requirement{Level: policy.May, Source: policy.SourceOverride}},
	{"override-encrypt", policy.Requirement{Level: policy.Encrypt, Source: policy.SourceOverride}},
	{"route-encrypt", policy.Requirement{Level: policy.Encrypt, Source: policy.SourceRoute}},
	{"level(9)", policy.Requirement{Level: policy.Level(9), Source: policy.SourceStatic}},
}

type matrixCell struct {
	static  string
	def     policy.Level
	sts     string
	dane    daneCase
	trn, rt bool
}

func (c matrixCell) key() string {
	return fmt.Sprint(c.static, c.def, c.sts, c.dane.name, c.trn, c.rt)
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
	s := &policy.Standard{Default: policy.Fixed{Level: c.def, InsecurePlaintext: c.def == policy.None}}
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
// refusal, with what the Connector checks in between; texts are the
// refusal's failure type and message or the hop's reason and note, and
// mx what the plan says of an MX host outside the MTA-STS patterns
// (use, mismatch) and whether this host is exempt from them (by DANE).
func (c matrixCell) outcome(req policy.Requirement) (hop policy.Hop, ref *policy.Refusal, word, mx string, texts []string) {
	p := policy.NewPlan(req, policy.Message{RequireTLS: c.rt, TLSRequiredNo: c.trn}, c.dane.perHost)
	use, mismatch := p.AllowsMX("other.example.net")
	mx = fmt.Sprintf("%v/%v/%v", use, mismatch, p.UsesDANE(c.dane.host))
	switch {
	case p.Refused != nil:
		ref = p.Refused
	default:
		ref = p.CheckRequireTLS(c.dane.mxSec, false, append([]policy.DANEState{c.dane.host}, c.dane.others...))
	}
	if ref == nil {
		if use, _ := p.AllowsMX("mx.example.com"); !use {
			return hop, nil, "mx refused", mx, nil
		}
		hop, ref = p.Host(policy.Host{Name: "mx.example.com", DANE: c.dane.host, HasAddrs: !c.dane.noAddrs, Reason: "test"})
	}
	if ref != nil {
		return policy.Hop{}, ref, refusalWord(ref), mx, []string{string(ref.Failure), ref.Error()}
	}
	return hop, nil, hopWord(hop), mx, []string{hop.Reason, hop.Note}
}

// flags names the message's options: "trn" for "TLS-Required: No", "rt"
// for REQUIRETLS, "-" for neither.
func flags(c matrixCell) string {
	switch {
	case c.trn && c.rt:
		return "trn+rt"
	case c.trn:
		return "trn"
	case c.rt:
		return "rt"
	}
	return "-"
}

// texts numbers the texts of the matrix, so that each long reason is
// written once, at the end of the golden file.
type texts struct {
	ids  map[string]int
	list []string
}

func (t *texts) ref(ss []string) string {
	var out []string
	for _, s := range ss {
		if s == "" {
			out = append(out, "-")
			continue
		}
		if t.ids == nil {
			t.ids = map[string]int{}
		}
		id, ok := t.ids[s]
		if !ok {
			t.list = append(t.list, s)
			id = len(t.list)
			t.ids[s] = id
		}
		out = append(out, fmt.Sprintf("T%d", id))
	}
	return strings.Join(out, " ")
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
	case policy.RefuseConfig:
		return "✗config"
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
	var tx texts
	fmt.Fprintf(&full, "# static default mta-sts dane message => requirement (level source mode floor local without-tlsa) => hop mx texts\n")
	words := map[string]string{}
	for _, c := range allCells() {
		req := c.requirement(t)
		hop, ref, w, mx, ts := c.outcome(req)
		words[c.key()] = w
		fmt.Fprintf(&full, "%s %s %s %s %s => %s %s %s %s %s %s => %s %s %s\n",
			c.static, c.def, c.sts, c.dane.name, flags(c), req.Level, req.Source, req.Mode, req.Floor, req.LocalLevel(), req.WithoutTLSA, w, mx, tx.ref(ts))
		checkInvariants(t, c, req, hop, ref)
	}
	fmt.Fprintf(&full, "# requirements of one's own Policy: name dane message => hop mx texts\n")
	for _, h := range handMade {
		for _, rt := range []bool{false, true} {
			for _, trn := range []bool{false, true} {
				for _, d := range daneCases {
					c := matrixCell{dane: d, trn: trn, rt: rt}
					req := h.req
					req.Domain, req.MXPatterns = "example.com", []string{"mx.example.com"}
					_, _, w, mx, ts := c.outcome(req)
					fmt.Fprintf(&full, "%s %s %s => %s %s %s\n", h.name, d.name, flags(c), w, mx, tx.ref(ts))
				}
			}
		}
	}
	fmt.Fprintf(&full, "# texts\n")
	for i, s := range tx.list {
		fmt.Fprintf(&full, "T%d %s\n", i+1, s)
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
		for _, d := range docDANE {
			fmt.Fprintf(&doc, " %-11s", d.name)
		}
		doc.WriteString("\n")
		for _, st := range statics {
			for _, sts := range stsModes {
				fmt.Fprintf(&doc, "\t%-9s %-7s", st, sts)
				for _, d := range docDANE {
					fmt.Fprintf(&doc, " %-11s", words[matrixCell{st, policy.May, sts, d, tab.trn, tab.rt}.key()])
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
	// So does the default level: "use TLS for all outbound mail" holds for
	// every host unless "TLS-Required: No" relaxes it.
	if c.def == policy.Encrypt && !c.trn && !hop.Required {
		t.Errorf("%+v: default encrypt planned as %s", c, hopWord(hop))
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
		switch {
		case strings.HasPrefix(line, "\t"): // a code block, as gofmt writes it
			line = "//" + line
		default:
			line = "// " + line
		}
		b.WriteString(strings.TrimRight(line, " \t") + "\n")
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
