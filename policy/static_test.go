package policy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseTableGood(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Entry
	}{
		{"empty", "", nil},
		{"comments and blanks", "# one\n\n   # indented comment\n\t\n", nil},
		{"exact domain", "example.com encrypt\n", []Entry{{Key: "example.com", Level: Encrypt, Line: 1}}},
		{"case and trailing dot", "Example.COM. Verify\n", []Entry{{Key: "example.com", Level: Verify, Line: 1}}},
		{"parent key", "\n.example.com secure\n", []Entry{{Key: ".example.com", Level: Secure, Line: 2}}},
		{"all levels", "a none\nb may\nc encrypt\nd dane\ne dane-only\nf verify\ng secure\n", []Entry{
			{Key: "a", Level: None, Line: 1}, {Key: "b", Level: May, Line: 2}, {Key: "c", Level: Encrypt, Line: 3},
			{Key: "d", Level: DANE, Line: 4}, {Key: "e", Level: DANEOnly, Line: 5}, {Key: "f", Level: Verify, Line: 6},
			{Key: "g", Level: Secure, Line: 7}}},
		{"next hop with port", "[MX.Example.NET]:587 secure match=example.net:.example.net protocols=>=TLSv1.3\n",
			[]Entry{{Key: "[mx.example.net]:587", Level: Secure, Match: []string{"example.net", ".example.net"}, MinVersion: tls.VersionTLS13, Line: 1}}},
		{"next hop without port", "[mx.example.net] encrypt\n", []Entry{{Key: "[mx.example.net]", Level: Encrypt, Line: 1}}},
		{"next hop ipv4", "[192.0.2.1]:25 encrypt\n", []Entry{{Key: "[192.0.2.1]:25", Level: Encrypt, Line: 1}}},
		{"next hop ipv6 canonical", "[2001:DB8:0::1]:2525 encrypt\n", []Entry{{Key: "[2001:db8::1]:2525", Level: Encrypt, Line: 1}}},
		{"match with commas, duplicates folded", "x secure match=A.example,.b.example,a.example\n",
			[]Entry{{Key: "x", Level: Secure, Match: []string{"a.example", ".b.example"}, Line: 1}}},
		{"match keywords", "x secure match=nexthop:dot-nexthop\n",
			[]Entry{{Key: "x", Level: Secure, Match: []string{"nexthop", "dot-nexthop"}, Line: 1}}},
		{"match duplicates folded after normalization, first place kept",
			"x secure match=c.example,B.Example.:a.example,b.example,.c.example,C.EXAMPLE.,NextHop,nexthop,.c.example\n",
			[]Entry{{Key: "x", Level: Secure, Match: []string{"c.example", "b.example", "a.example", ".c.example", "nexthop"}, Line: 1}}},
		{"protocols negative form allows 1.2", "x encrypt protocols=!SSLv2,!SSLv3,!TLSv1,!TLSv1.1\n",
			[]Entry{{Key: "x", Level: Encrypt, MinVersion: tls.VersionTLS12, Line: 1}}},
		{"protocols negative form excluding 1.2", "x encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2\n",
			[]Entry{{Key: "x", Level: Encrypt, MinVersion: tls.VersionTLS13, Line: 1}}},
		{"protocols old minimum raised to 1.2", "x encrypt protocols=>=TLSv1\n",
			[]Entry{{Key: "x", Level: Encrypt, MinVersion: tls.VersionTLS12, Line: 1}}},
		{"protocols positive list", "x may protocols=tlsv1.3\n",
			[]Entry{{Key: "x", Level: May, MinVersion: tls.VersionTLS13, Line: 1}}},
		{"protocols upper bound 1.3 is fine", "x encrypt protocols=>=TLSv1.2:<=TLSv1.3\n",
			[]Entry{{Key: "x", Level: Encrypt, MinVersion: tls.VersionTLS12, Line: 1}}},
		{"extensions", "x verify on-failure=BOUNCE mode=testing\ny encrypt on-failure=defer mode=enforce override=no\nz none override=yes\n", []Entry{
			{Key: "x", Level: Verify, OnFailure: Bounce, Mode: Testing, Line: 1},
			{Key: "y", Level: Encrypt, Line: 2},
			{Key: "z", Level: None, Override: true, Line: 3}}},
		{"continuation lines", "[h]:587 secure\n  match=example.net\n\tprotocols=>=TLSv1.3\nnext.example may\n", []Entry{
			{Key: "[h]:587", Level: Secure, Match: []string{"example.net"}, MinVersion: tls.VersionTLS13, Line: 1},
			{Key: "next.example", Level: May, Line: 4}}},
		{"comment between continuation lines", "x secure\n# note\n  match=a.example\n", []Entry{
			{Key: "x", Level: Secure, Match: []string{"a.example"}, Line: 1}}},
		{"trailing comment and CRLF", "x encrypt # legacy partner\r\ny may\r\n", []Entry{
			{Key: "x", Level: Encrypt, Line: 1}, {Key: "y", Level: May, Line: 2}}},
		{"default entry", "* encrypt on-failure=bounce\n", []Entry{{Key: "*", Level: Encrypt, OnFailure: Bounce, Line: 1}}},
		{"underscore label", "_x.example encrypt\n", []Entry{{Key: "_x.example", Level: Encrypt, Line: 1}}},
		{"no final newline", "x may", []Entry{{Key: "x", Level: May, Line: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := ParseTable(strings.NewReader(tt.in), "t")
			if err != nil {
				t.Fatalf("ParseTable: %v", err)
			}
			got := tb.Entries()
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entries:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseTableErrors(t *testing.T) {
	type perr struct {
		line int
		msg  string // substring of Msg
	}
	tests := []struct {
		name string
		in   string
		want []perr
	}{
		{"unknown level", "a.example may\n\n# c\nb.example encrpyt\n",
			[]perr{{4, `unknown level "encrpyt" (want none, may, encrypt, dane, dane-only, verify or secure)`}}},
		{"fingerprint", "x fingerprint\n", []perr{{1, `level "fingerprint" is not supported`}}},
		{"missing level", "x\n", []perr{{1, `entry "x" has no level`}}},
		{"attribute instead of level", "x match=a\n", []perr{{1, `attribute "match=a" where the level should be`}}},
		{"unknown attribute", "x encrypt colour=blue\n", []perr{{1, `unknown attribute "colour"`}}},
		{"postfix attribute unsupported", "x encrypt ciphers=high\n", []perr{{1, `Postfix attribute ciphers= is not supported`}}},
		{"attribute without value", "x encrypt bounce\n", []perr{{1, `attribute "bounce" has no value`}}},
		{"empty value", "x secure match=\n", []perr{{1, `match= has an empty value`}}},
		{"match of only separators", "x secure match=::\n", []perr{{1, `match= names no host`}}},
		{"duplicate attribute", "x secure match=a match=b\n", []perr{{1, `attribute match= given twice`}}},
		{"match with verify", "x verify match=a.example\n", []perr{{1, `match= applies only to level secure, not verify`}}},
		{"match with encrypt, reported on entry line", "x encrypt\n  match=a.example\n", []perr{{1, `match= applies only to level secure, not encrypt`}}},
		{"match=hostname", "x secure match=hostname\n", []perr{{1, `match=hostname is not supported`}}},
		{"bad match name", "x secure match=a..b\n", []perr{{1, `invalid match name "a..b": empty label`}}},
		{"protocols unknown", "x encrypt protocols=TLSv2\n", []perr{{1, `unknown protocol "TLSv2"`}}},
		{"protocols max 1.2", "x encrypt protocols=<=TLSv1.2\n", []perr{{1, `excludes TLSv1.3: maximum versions are not supported`}}},
		{"protocols excluding 1.3", "x encrypt protocols=!TLSv1.3\n", []perr{{1, `excludes TLSv1.3`}}},
		{"protocols only old", "x encrypt protocols=TLSv1:TLSv1.1\n", []perr{{1, `allows neither TLSv1.2 nor TLSv1.3`}}},
		{"protocols empty list", "x encrypt protocols=:\n", []perr{{1, `protocols= names no protocol`}}},
		{"protocols at none", "x none protocols=>=TLSv1.3\n", []perr{{1, `protocols= has no effect at level none`}}},
		{"on-failure at may", "x may on-failure=bounce\n", []perr{{1, `on-failure= has no effect at level may`}}},
		{"on-failure bad", "x encrypt on-failure=drop\n", []perr{{1, `on-failure=drop: want defer or bounce`}}},
		{"mode bad", "x encrypt mode=report\n", []perr{{1, `mode=report: want enforce or testing`}}},
		{"mode testing at none", "x none mode=testing\n", []perr{{1, `mode=testing has no effect at level none`}}},
		{"override bad", "x encrypt override=maybe\n", []perr{{1, `override=maybe: want yes or no`}}},
		{"override on default", "* may override=yes\n", []perr{{1, `override=yes is not allowed on the default entry`}}},
		{"override with testing", "x verify override=yes mode=testing\n", []perr{{1, `override=yes cannot be combined with mode=testing`}}},
		{"duplicate key", "a.example encrypt\nb.example may\nA.Example. verify\n", []perr{{3, `duplicate entry for "a.example" (first on line 1)`}}},
		{"duplicate next hop normalized", "[2001:db8::1]:25 encrypt\n[2001:DB8:0:0::1]:25 verify\n", []perr{{2, `duplicate entry for "[2001:db8::1]:25" (first on line 1)`}}},
		{"continuation first", "  x encrypt\n", []perr{{1, `continuation line`}}},
		{"port without brackets", "example.com:587 encrypt\n", []perr{{1, `a port needs a bracketed host`}}},
		{"bad port", "[h]:0 encrypt\n[h]:65536 encrypt\n[h]:x encrypt\n[h]:+5 encrypt\n[h encrypt\n", []perr{
			{1, `invalid next-hop key "[h]:0"`}, {2, `invalid next-hop key`}, {3, `invalid next-hop key`},
			{4, `invalid next-hop key`}, {5, `invalid next-hop key "[h"`}}},
		{"bad domain", "exa mple.com encrypt\n", []perr{{1, `unknown level "mple.com"`}}},
		{"bad characters", "ex!ample.com encrypt\n", []perr{{1, `invalid key "ex!ample.com": invalid character '!'`}}},
		{"empty label", "a..b encrypt\n", []perr{{1, `empty label`}}},
		{"lone dot", ". encrypt\n", []perr{{1, `empty domain name`}}},
		{"long label", strings.Repeat("a", 64) + ".example encrypt\n", []perr{{1, `label longer than 63 bytes`}}},
		{"attribute error on continuation line", "x secure\n  match=a.example\n  colour=red\n", []perr{{3, `unknown attribute "colour"`}}},
		{"several errors", "a encrpyt\nb may\nb may\nc verify match=x\n", []perr{
			{1, `unknown level`}, {3, `duplicate entry for "b" (first on line 2)`}, {4, `match= applies only to level secure`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := ParseTable(strings.NewReader(tt.in), "tls_policy")
			if err == nil {
				t.Fatalf("ParseTable succeeded: %v", tb.Entries())
			}
			var got []*ParseError
			if pe, ok := err.(*ParseError); ok {
				got = []*ParseError{pe}
			} else if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					pe, ok := e.(*ParseError)
					if !ok {
						t.Fatalf("joined error %T is not a *ParseError: %v", e, e)
					}
					got = append(got, pe)
				}
			} else {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "tls_policy" {
				t.Errorf("errors.As: %v, File %q", pe, pe.File)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(got), len(tt.want), err)
			}
			for i, w := range tt.want {
				if got[i].Line != w.line || !strings.Contains(got[i].Msg, w.msg) {
					t.Errorf("error %d = line %d %q, want line %d containing %q", i, got[i].Line, got[i].Msg, w.line, w.msg)
				}
			}
		})
	}
}

func TestParseErrorText(t *testing.T) {
	_, err := ParseTable(strings.NewReader("a may\nb may\nc may\nd may\ne may\nf may\nx encrpyt\n"), "/etc/mailtls/tls_policy")
	want := `policy: /etc/mailtls/tls_policy line 7: unknown level "encrpyt" (want none, may, encrypt, dane, dane-only, verify or secure)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
	if got := (&ParseError{Line: 3, Msg: "m"}).Error(); got != "policy: line 3: m" {
		t.Errorf("without file: %q", got)
	}
	if got := (&ParseError{File: "f", Msg: "m"}).Error(); got != "policy: f: m" {
		t.Errorf("without line: %q", got)
	}
}

// TestParseTableMatchManyNames: a long match= list, every name given twice
// (second time in reverse order), keeps one of each in the order of first
// appearance.
func TestParseTableMatchManyNames(t *testing.T) {
	const n = 4000
	var names, want []string
	for i := range n {
		want = append(want, fmt.Sprintf("h%d", i))
	}
	names = append(names, want...)
	for i := n - 1; i >= 0; i-- {
		names = append(names, strings.ToUpper(want[i]))
	}
	tb := mustTable(t, "x secure match="+strings.Join(names, ",")+"\n")
	got := tb.Entries()[0].Match
	if !slices.Equal(got, want) {
		t.Errorf("match= kept %d names, want %d in order of first appearance", len(got), len(want))
	}
}

func TestParseTableErrorLimit(t *testing.T) {
	in := strings.Repeat("x bogus\n", 100)
	_, err := ParseTable(strings.NewReader(in), "t")
	j, ok := err.(interface{ Unwrap() []error })
	if !ok || len(j.Unwrap()) != maxParseErrors {
		t.Fatalf("want %d joined errors, got %v", maxParseErrors, err)
	}
}

func TestParseTableLongLine(t *testing.T) {
	in := "a may\n" + strings.Repeat("x", maxLineLen+10) + " may\n"
	_, err := ParseTable(strings.NewReader(in), "t")
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 || !strings.Contains(pe.Msg, "longer than") {
		t.Fatalf("err = %v", err)
	}
}

func mustTable(t testing.TB, text string) *Table {
	t.Helper()
	tb, err := ParseTable(strings.NewReader(text), "tls_policy")
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

const lookupTable = `# test table
example.com          encrypt
.example.com         verify   on-failure=bounce
.b.example.com       secure   match=nexthop:dot-nexthop:corp.example
.com                 may
[mx.example.net]     encrypt
[mx.example.net]:587 secure   match=example.net protocols=>=TLSv1.3
[192.0.2.7]:25       verify
legacy.example       none     override=yes
testing.example      verify   mode=testing
* dane
`

func TestTableLookup(t *testing.T) {
	tb := mustTable(t, lookupTable)
	tests := []struct {
		in   string
		want Requirement
	}{
		{"example.com", Requirement{Domain: "example.com", Level: Encrypt, Source: SourceStatic, Reason: "tls_policy:2 entry example.com"}},
		{"EXAMPLE.com.", Requirement{Domain: "example.com", Level: Encrypt, Source: SourceStatic, Reason: "tls_policy:2 entry example.com"}},
		{" example.com ", Requirement{Domain: "example.com", Level: Encrypt, Source: SourceStatic, Reason: "tls_policy:2 entry example.com"}},
		{"mail.example.com", Requirement{Domain: "mail.example.com", Level: Verify, OnFailure: Bounce, Source: SourceStatic, Reason: "tls_policy:3 entry .example.com"}},
		// Nearest parent wins: a.b.example.com tries .b.example.com before .example.com.
		{"a.b.example.com", Requirement{Domain: "a.b.example.com", Level: Secure, Match: []string{"a.b.example.com", ".a.b.example.com", "corp.example"}, Source: SourceStatic, Reason: "tls_policy:4 entry .b.example.com"}},
		// .b.example.com does not match b.example.com itself; the next parent does.
		{"b.example.com", Requirement{Domain: "b.example.com", Level: Verify, OnFailure: Bounce, Source: SourceStatic, Reason: "tls_policy:3 entry .example.com"}},
		{"other.com", Requirement{Domain: "other.com", Level: May, Source: SourceStatic, Reason: "tls_policy:5 entry .com"}},
		// .com does not match com itself: the default applies.
		{"com", Requirement{Domain: "com", Level: DANE, Source: SourceDefault, Reason: "tls_policy:11 entry *"}},
		{"example.org", Requirement{Domain: "example.org", Level: DANE, Source: SourceDefault, Reason: "tls_policy:11 entry *"}},
		{"legacy.example", Requirement{Domain: "legacy.example", Level: None, Source: SourceOverride, Reason: "tls_policy:9 entry legacy.example (override)"}},
		{"testing.example", Requirement{Domain: "testing.example", Level: Verify, Mode: Testing, Source: SourceStatic, Reason: "tls_policy:10 entry testing.example"}},
		// Next hops through Lookup, written as Postfix writes them.
		{"[mx.example.net]:587", Requirement{Domain: "mx.example.net", Level: Secure, MinVersion: tls.VersionTLS13, Match: []string{"example.net"}, Source: SourceStatic, Reason: "tls_policy:7 entry [mx.example.net]:587"}},
		{"[MX.Example.Net.]:2525", Requirement{Domain: "mx.example.net", Level: Encrypt, Source: SourceStatic, Reason: "tls_policy:6 entry [mx.example.net]"}},
		{"[mx.example.net]", Requirement{Domain: "mx.example.net", Level: Encrypt, Source: SourceStatic, Reason: "tls_policy:6 entry [mx.example.net]"}},
		{"[192.0.2.7]", Requirement{Domain: "192.0.2.7", Level: Verify, Source: SourceStatic, Reason: "tls_policy:8 entry [192.0.2.7]:25"}},
	}
	for _, tt := range tests {
		got, err := tb.Lookup(context.Background(), tt.in)
		if err != nil {
			t.Errorf("Lookup(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
		}
	}
}

func TestTableLookupNextHop(t *testing.T) {
	tb := mustTable(t, lookupTable)
	ctx := context.Background()
	tests := []struct {
		host      string
		port      int
		wantLevel Level
		wantKey   string // "" means ErrNoPolicy
	}{
		{"mx.example.net", 587, Secure, "[mx.example.net]:587"},
		{"[mx.example.net]", 587, Secure, "[mx.example.net]:587"},
		{"MX.EXAMPLE.NET.", 25, Encrypt, "[mx.example.net]"},
		{"mx.example.net", 0, Encrypt, "[mx.example.net]"},
		{"192.0.2.7", 0, Verify, "[192.0.2.7]:25"},
		{"::ffff:192.0.2.7", 25, Verify, "[192.0.2.7]:25"},
		{"192.0.2.7", 465, None, ""},
		// A domain entry never applies to a next hop, nor does the default.
		{"example.com", 25, None, ""},
	}
	for _, tt := range tests {
		got, err := tb.LookupNextHop(ctx, tt.host, tt.port)
		if tt.wantKey == "" {
			if !errors.Is(err, ErrNoPolicy) {
				t.Errorf("LookupNextHop(%q, %d) = %v, %v; want ErrNoPolicy", tt.host, tt.port, got, err)
			}
			continue
		}
		if err != nil || got.Level != tt.wantLevel || !strings.HasSuffix(got.Reason, " "+tt.wantKey) {
			t.Errorf("LookupNextHop(%q, %d) = %v, %v; want %v from %s", tt.host, tt.port, got, err, tt.wantLevel, tt.wantKey)
		}
	}
	for _, bad := range []struct {
		host string
		port int
	}{{"", 25}, {"a..b", 25}, {"h", -1}, {"h", 70000}} {
		if _, err := tb.LookupNextHop(ctx, bad.host, bad.port); err == nil || errors.Is(err, ErrNoPolicy) {
			t.Errorf("LookupNextHop(%q, %d): err = %v, want an invalid-input error", bad.host, bad.port, err)
		}
	}
}

func TestTableLookupErrors(t *testing.T) {
	ctx := context.Background()
	noDefault := mustTable(t, "example.com encrypt\n")
	if _, err := noDefault.Lookup(ctx, "example.org"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("no entry: err = %v, want ErrNoPolicy", err)
	}
	var zero Table
	if _, err := zero.Lookup(ctx, "example.org"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("zero Table: err = %v, want ErrNoPolicy", err)
	}
	if _, err := zero.LookupNextHop(ctx, "h", 25); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("zero Table next hop: err = %v, want ErrNoPolicy", err)
	}
	for _, bad := range []string{"", ".", ".example.com", "[h", "[h]:0", "[h]x", "[]"} {
		if _, err := noDefault.Lookup(ctx, bad); err == nil || errors.Is(err, ErrNoPolicy) {
			t.Errorf("Lookup(%q): err = %v, want an invalid-domain error", bad, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := noDefault.Lookup(cctx, "example.com"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
	if _, err := noDefault.LookupNextHop(cctx, "h", 25); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled next hop: err = %v", err)
	}
}

func TestTableEntriesIsACopy(t *testing.T) {
	tb := mustTable(t, "x secure match=a.example\n")
	es := tb.Entries()
	es[0].Match[0] = "evil.example"
	es[0].Level = None
	r, err := tb.Lookup(context.Background(), "x")
	if err != nil || r.Level != Secure || r.Match[0] != "a.example" {
		t.Fatalf("table changed through Entries: %v %v", r, err)
	}
	r.Match[0] = "evil.example"
	if r2, _ := tb.Lookup(context.Background(), "x"); r2.Match[0] != "a.example" {
		t.Fatalf("table changed through a Requirement: %v", r2)
	}
}

func TestTableString(t *testing.T) {
	tb := mustTable(t, "Example.com encrypt on-failure=bounce\n[h]:587 secure\n match=nexthop:.corp.example\n protocols=!SSLv2:!TLSv1.2 mode=testing\nx none override=yes\n* may protocols=>=TLSv1\n")
	want := "example.com encrypt on-failure=bounce\n" +
		"[h]:587 secure match=nexthop:.corp.example protocols=>=TLSv1.3 mode=testing\n" +
		"x none override=yes\n" +
		"* may protocols=>=TLSv1.2\n"
	if got := tb.String(); got != want {
		t.Errorf("String:\n%s\nwant\n%s", got, want)
	}
	tb2 := mustTable(t, tb.String())
	if !sameEntries(tb.Entries(), tb2.Entries()) {
		t.Errorf("round trip changed the table:\n%v\n%v", tb.Entries(), tb2.Entries())
	}
}

func TestLoadTable(t *testing.T) {
	path := filepath.Join("testdata", "tls_policy")
	tb, err := LoadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Name() != path {
		t.Errorf("Name = %q", tb.Name())
	}
	ctx := context.Background()
	r, err := tb.LookupNextHop(ctx, "smarthost.example.net", 587)
	if err != nil || r.Level != Secure || !reflect.DeepEqual(r.Match, []string{"example.net", ".example.net"}) ||
		r.MinVersion != tls.VersionTLS12 || r.Reason != path+":12 entry [smarthost.example.net]:587" {
		t.Errorf("smarthost: %#v, %v", r, err)
	}
	r, err = tb.Lookup(ctx, "www.bank.example")
	if err != nil || r.Level != Verify || r.MinVersion != tls.VersionTLS13 {
		t.Errorf("bank: %v, %v", r, err)
	}
	if _, err := LoadTable(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("x may\ny encrpyt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var pe *ParseError
	if _, err := LoadTable(bad); !errors.As(err, &pe) || pe.File != bad || pe.Line != 2 {
		t.Errorf("bad file: %v", err)
	}
}

func TestNewTable(t *testing.T) {
	tb, err := NewTable("code", []Entry{
		{Key: "Example.COM.", Level: Secure, Match: []string{"Example.NET", "example.net."}},
		{Key: "[2001:DB8::1]:25", Level: Encrypt, OnFailure: Bounce},
		{Key: "*", Level: May},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Key: "example.com", Level: Secure, Match: []string{"example.net"}},
		{Key: "[2001:db8::1]:25", Level: Encrypt, OnFailure: Bounce},
		{Key: "*", Level: May},
	}
	if !reflect.DeepEqual(tb.Entries(), want) {
		t.Errorf("entries %v", tb.Entries())
	}
	r, err := tb.Lookup(context.Background(), "example.com")
	if err != nil || r.Reason != "code entry example.com" {
		t.Errorf("lookup: %v %v", r, err)
	}
	bad := []struct {
		e   Entry
		msg string
	}{
		{Entry{Key: "a b", Level: May}, "invalid character"},
		{Entry{Key: "x", Level: Level(42)}, "invalid level"},
		{Entry{Key: "x", Level: Verify, Match: []string{"a.example"}}, "match= applies only to level secure"},
		{Entry{Key: "x", Level: Secure, Match: []string{"a..example"}}, "invalid match name"},
		{Entry{Key: "x", Level: Encrypt, MinVersion: tls.VersionTLS10}, "MinVersion"},
		{Entry{Key: "x", Level: Encrypt, OnFailure: 7}, "invalid OnFailure"},
		{Entry{Key: "*", Level: None, Override: true}, "override=yes is not allowed"},
		{Entry{Key: "x", Level: May, OnFailure: Bounce}, "on-failure= has no effect"},
	}
	for _, b := range bad {
		_, err := NewTable("code", []Entry{b.e})
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, b.msg) {
			t.Errorf("NewTable(%+v) = %v, want %q", b.e, err, b.msg)
		}
	}
	_, err = NewTable("code", []Entry{{Key: "a", Level: May, Line: 3}, {Key: "A.", Level: Verify, Line: 9}})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 9 || !strings.Contains(pe.Msg, "first on line 3") {
		t.Errorf("duplicate: %v", err)
	}
	// What NewTable accepts prints to text ParseTable reads back.
	if tb2 := mustTable(t, tb.String()); !sameEntries(tb.Entries(), tb2.Entries()) {
		t.Errorf("round trip: %v != %v", tb.Entries(), tb2.Entries())
	}
	// The caller's slices are not retained.
	in := []Entry{{Key: "x", Level: Secure, Match: []string{"a.example"}}}
	tb, _ = NewTable("code", in)
	in[0].Match[0] = "evil.example"
	if tb.Entries()[0].Match[0] != "a.example" {
		t.Error("NewTable kept the caller's Match slice")
	}
}

// sameEntries compares entries ignoring Line.
func sameEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.Line, y.Line = 0, 0
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
