package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
)

func TestParseRecord(t *testing.T) {
	good := []struct {
		in   string
		id   string
		exts []Extension
	}{
		{"v=STSv1; id=20160831085700Z;", "20160831085700Z", nil},
		{"v=STSv1; id=abc", "abc", nil},
		{"v=STSv1;id=abc", "abc", nil},
		{"v=STSv1 ;\tid=abc ; ", "abc", nil},
		{"v=STSv1; id=abc; ext=v.a-l", "abc", []Extension{{"ext", "v.a-l"}}},
		{"v=STSv1; id=first; id=second", "first", nil},
		{"v=STSv1; id=" + strings.Repeat("a", 32), strings.Repeat("a", 32), nil},
	}
	for _, tc := range good {
		r, err := ParseRecord(tc.in)
		if err != nil {
			t.Errorf("ParseRecord(%q): %v", tc.in, err)
			continue
		}
		if r.ID != tc.id || !reflect.DeepEqual(r.Extensions, tc.exts) {
			t.Errorf("ParseRecord(%q) = %+v, want id %q exts %v", tc.in, r, tc.id, tc.exts)
		}
	}
	bad := []string{
		"",
		"v=STSv1",         // no fields
		"v=STSv1;",        // no fields
		"v=STSv1; ",       // no fields
		"v=STSv2; id=1",   // wrong version
		"V=STSv1; id=1",   // version is case-sensitive
		"v=stsv1; id=1",   // likewise
		"v=STSv1; id=",    // empty id
		"v=STSv1; id=a-b", // id is letters and digits only
		"v=STSv1; id=" + strings.Repeat("a", 33),
		"v=STSv1; ext=1",          // missing id
		"v=STSv1 id=1",            // missing delimiter
		"v=STSv1; id=1 x",         // junk after value
		"v=STSv1; id=1;; ",        // empty field
		"v=STSv1; _x=1; id=1",     // name must start with a letter or digit
		"v=STSv1; id=1; ext=a=b",  // '=' not allowed in a value
		"v=STSv1; id=1; ext",      // no '='
		"v=STSv1; id=1; ext=\x01", // control character
	}
	for _, in := range bad {
		if r, err := ParseRecord(in); !errors.Is(err, ErrRecordSyntax) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordSyntax", in, r, err)
		}
	}
}

func TestRecordStringRoundTrip(t *testing.T) {
	r := Record{ID: "x1", Extensions: []Extension{{"k", "v"}}}
	got, err := ParseRecord(r.String())
	if err != nil || !reflect.DeepEqual(*got, r) {
		t.Fatalf("round trip of %q: %+v, %v", r.String(), got, err)
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET\r\nmax_age: 604800\r\n")
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{Mode: ModeEnforce, MaxAge: 604800, MX: []string{"mail.example.com", "*.example.net"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v, want %+v", p, want)
	}

	good := []struct {
		in   string
		want Policy
	}{
		// LF endings, no final terminator, whitespace after ':' and at end.
		{"version: STSv1\nmode:testing\nmx:  mx.example \t\nmax_age: 0", Policy{Mode: ModeTesting, MX: []string{"mx.example"}}},
		// mode none needs no mx.
		{"version: STSv1\nmode: none\nmax_age: 31557600\n", Policy{Mode: ModeNone, MaxAge: MaxMaxAge}},
		// unknown keys are kept, with inner spaces and UTF-8 allowed.
		{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nx-note: hello wörld; a=b\n",
			Policy{Mode: ModeEnforce, MaxAge: 1, MX: []string{"a.example"}, Extensions: []Extension{{"x-note", "hello wörld; a=b"}}}},
		// duplicate non-mx fields: the first is used.
		{"version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 5\nmax_age: 6\n",
			Policy{Mode: ModeTesting, MaxAge: 5, MX: []string{"a.example"}}},
		// field order is free.
		{"max_age: 9\nmx: a.example\nmode: enforce\nversion: STSv1", Policy{Mode: ModeEnforce, MaxAge: 9, MX: []string{"a.example"}}},
	}
	for _, tc := range good {
		p, err := ParsePolicy(tc.in)
		if err != nil {
			t.Errorf("ParsePolicy(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(*p, tc.want) {
			t.Errorf("ParsePolicy(%q) = %+v, want %+v", tc.in, *p, tc.want)
		}
		// String produces something that parses to the same policy.
		p2, err := ParsePolicy(p.String())
		if err != nil || !reflect.DeepEqual(p2, p) {
			t.Errorf("re-parse of %q: %+v, %v", p.String(), p2, err)
		}
	}

	const ok = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n"
	bad := []string{
		"",
		"\n",
		"version: STSv1\nmode: enforce\nmax_age: 86400\n",            // enforce without mx
		"version: STSv1\nmode: testing\nmax_age: 86400\n",            // testing without mx
		"mode: enforce\nmx: mx.example.com\nmax_age: 86400\n",        // no version
		"version: STSv1\nmx: mx.example.com\nmax_age: 86400\n",       // no mode
		"version: STSv1\nmode: enforce\nmx: mx.example.com\n",        // no max_age
		strings.Replace(ok, "STSv1", "STSv2", 1),                     // version
		strings.Replace(ok, "enforce", "Enforce", 1),                 // values are case-sensitive
		strings.Replace(ok, "enforce", "report", 1),                  // unknown mode
		strings.Replace(ok, "mode:", "Mode:", 1),                     // keys are case-sensitive
		strings.Replace(ok, "86400", "31557601", 1),                  // above the maximum
		strings.Replace(ok, "86400", "12345678901", 1),               // 11 digits
		strings.Replace(ok, "86400", "-1", 1),                        // negative
		strings.Replace(ok, "86400", "", 1),                          // empty
		strings.Replace(ok, "86400", "1 2", 1),                       // junk
		strings.Replace(ok, "mx.example.com", "*.*.example.com", 1),  // one wildcard label only
		strings.Replace(ok, "mx.example.com", "mx.*.example.com", 1), // wildcard only leftmost
		strings.Replace(ok, "mx.example.com", "*", 1),                // bare wildcard
		strings.Replace(ok, "mx.example.com", "-mx.example.com", 1),  // LDH
		strings.Replace(ok, "mx.example.com", "mx..example.com", 1),  // empty label
		strings.Replace(ok, "mx.example.com", "mx.example.com.", 1),  // trailing dot
		strings.Replace(ok, "mx.example.com", "bücher.example", 1),   // U-label
		strings.Replace(ok, "mx.example.com", "", 1),                 // empty
		strings.Replace(ok, "mx.example.com", "192.0.2.1", 1),        // an address, not a name
		strings.Replace(ok, "\n", "\n\n", 1),                         // empty line
		strings.Replace(ok, "\n", "\r", 1),                           // bare CR
		"\ufeff" + ok,                                                // BOM
		ok + "no colon here\n",                                       // malformed line
		ok + "_x: y\n",                                               // bad key
		ok + "x:\n",                                                  // empty extension value
		ok + "x: a\tb\n",                                             // TAB inside a value
		ok + "x: \xff\n",                                             // invalid UTF-8
		ok + "version: STSv9\n",                                      // duplicate, invalid
	}
	for _, in := range bad {
		if p, err := ParsePolicy(in); !errors.Is(err, ErrPolicySyntax) {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want ErrPolicySyntax", in, p, err)
		}
	}
}

func TestMatchMX(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"mx.example.com", "mx.example.com", true},
		{"mx.example.com", "MX.Example.COM.", true},
		{"mx.example.com", "mx2.example.com", false},
		{"mx.example.com", "example.com", false},
		{"*.example.com", "mx.example.com", true},
		{"*.example.com", "MX.EXAMPLE.COM", true},
		{"*.example.com", "a.b.example.com", false}, // one label only (§4.1)
		{"*.example.com", "example.com", false},     // the wildcard needs a label
		{"*.example.com", ".example.com", false},
		{"*.example.com", "mxexample.com", false},
		{"*.example.com", "mx.example.com.evil", false},
		{"", "mx.example.com", false},
		{"mx.example.com", "", false},
		{"*.", "a", false},
	}
	for _, tc := range tests {
		if got := policy.MatchMX(tc.pattern, tc.host); got != tc.want {
			t.Errorf("policy.MatchMX(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
	p := &Policy{MX: []string{"mx1.example.com", "*.mail.example.com"}}
	for host, want := range map[string]bool{
		"mx1.example.com": true, "x.mail.example.com": true,
		"mx2.example.com": false, "a.b.mail.example.com": false, "mail.example.com": false,
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestTLSRPTResultType(t *testing.T) {
	for err, want := range map[error]string{
		ErrWebPKI:          "sts-webpki-invalid",
		ErrPolicySyntax:    "sts-policy-invalid",
		ErrPolicyTooLarge:  "sts-policy-invalid",
		ErrPolicyFetch:     "sts-policy-fetch-error",
		ErrNoRecord:        "",
		ErrModeNone:        "",
		ErrMultipleRecords: "",
	} {
		wrapped := &NoPolicyError{Domain: "d.example", Err: err}
		if got := TLSRPTResultType(wrapped); string(got) != want {
			t.Errorf("TLSRPTResultType(%v) = %q, want %q", err, got, want)
		}
	}
}

// TestParseRecordEdges pins behaviour the shared TXT grammar
// (internal/txtrecord) must keep for MTA-STS (RFC 8461 §3.1).
func TestParseRecordEdges(t *testing.T) {
	for _, in := range []string{
		"v=STSv1; id=a; id=b-c", // a later id is ignored but must still be valid
		"v=STSv1; ID=a",         // names are case-sensitive: ID is an extension, id missing
		"v=STSv1; id=a,b",       // no list fields in MTA-STS
		"v=STSv1; id=a , b",
		"v=STSv1;\nid=a", // LF is not WSP
	} {
		if r, err := ParseRecord(in); !errors.Is(err, ErrRecordSyntax) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordSyntax", in, r, err)
		}
	}
	r, err := ParseRecord("v=STSv1; x=1; id=a; x=2;")
	if want := (&Record{ID: "a", Extensions: []Extension{{"x", "1"}, {"x", "2"}}}); err != nil || !reflect.DeepEqual(r, want) {
		t.Errorf("repeated extension: %+v, %v; want %+v", r, err, want)
	}
	// The first problem in the record is the one reported, even when a
	// later one is structural.
	if _, err := ParseRecord("v=STSv1; id=a-b; junk"); err == nil || !strings.Contains(err.Error(), "invalid id") {
		t.Errorf("error = %v, want the invalid id", err)
	}
}
