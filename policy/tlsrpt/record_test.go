package tlsrpt

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"
)

func TestParseRecord(t *testing.T) {
	good := []struct {
		in   string
		rua  []string
		exts []Extension
	}{
		{"v=TLSRPTv1; rua=mailto:reports@example.com", []string{"mailto:reports@example.com"}, nil},
		{"v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt;", []string{"https://reporting.example.com/v1/tlsrpt"}, nil},
		{"v=TLSRPTv1 ; rua=mailto:a@example.com , https://r.example/x ;ext=1",
			[]string{"mailto:a@example.com", "https://r.example/x"}, []Extension{{"ext", "1"}}},
		{"v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com",
			[]string{"mailto:a@example.com", "mailto:b@example.com"}, nil},
		{"v=TLSRPTv1; rua=mailto:tls%2Creports@example.com", []string{"mailto:tls%2Creports@example.com"}, nil},
	}
	for _, tc := range good {
		r, err := ParseRecord(tc.in)
		if err != nil {
			t.Errorf("ParseRecord(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(r.RUA, tc.rua) || !reflect.DeepEqual(r.Extensions, tc.exts) {
			t.Errorf("ParseRecord(%q) = %+v", tc.in, r)
		}
		if r2, err := ParseRecord(r.String()); err != nil || !reflect.DeepEqual(r2, r) {
			t.Errorf("round trip %q: %+v, %v", r.String(), r2, err)
		}
	}
	bad := []string{
		"",
		"v=TLSRPTv1",
		"v=TLSRPTv1;",
		"v=TLSRPTv2; rua=mailto:a@example.com",
		"V=TLSRPTv1; rua=mailto:a@example.com",
		"v=TLSRPTv1; ext=1",                                // no rua
		"v=TLSRPTv1; rua=",                                 // empty
		"v=TLSRPTv1; rua=a@example.com",                    // no scheme
		"v=TLSRPTv1; rua=mailto:a@example.com,",            // empty URI after ','
		"v=TLSRPTv1; rua=mailto:a!b@example.com",           // '!' must be encoded
		"v=TLSRPTv1; rua=mailto:a@example.com x",           // junk
		"v=TLSRPTv1 rua=mailto:a@example.com",              // no delimiter
		"v=TLSRPTv1; rua=mailto:a@example.com; _e=1",       // bad name
		"v=TLSRPTv1; rua=mailto:a@example.com; e=",         // empty value
		"v=TLSRPTv1; rua=mailto:a@example.com; e=a=b",      // '=' in value
		"v=TLSRPTv1; rua=mailto:a@example.com;; ",          // empty field
		"v=TLSRPTv1; rua=https://[::1/",                    // unparsable URI
		"v=TLSRPTv1; rua=mailto:a@example.com; e=\x7f",     // DEL
		"v=TLSRPTv1; rua=mailto:caf\xc3\xa9@example.com",   // raw UTF-8 in URI
		"v=TLSRPTv1; rua=mailto:a@example.com ; rua=x y",   // second rua bad
		"v=TLSRPTv1; rua=mailto:a@example.com, ,mailto:b@", // empty middle
	}
	for _, in := range bad {
		if r, err := ParseRecord(in); !errors.Is(err, ErrRecordSyntax) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordSyntax", in, r, err)
		}
	}
}

func TestRecordDestinations(t *testing.T) {
	r, err := ParseRecord("v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com?subject=x,https://r.example.com/up,http://insecure.example/,ftp://x.example/,mailto:noat")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.MailtoAddresses(), []string{"tls+rpt@example.com"}; !reflect.DeepEqual(got, want) {
		t.Errorf("MailtoAddresses = %q, want %q", got, want)
	}
	if got, want := r.HTTPSURLs(), []string{"https://r.example.com/up"}; !reflect.DeepEqual(got, want) {
		t.Errorf("HTTPSURLs = %q, want %q", got, want)
	}
}

func TestLookupRecord(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"_smtp._tls.one.example.":   {TXT: []string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:r@one.example"}},
		"_smtp._tls.two.example.":   {TXT: []string{"v=TLSRPTv1; rua=mailto:a@two.example", "v=TLSRPTv1; rua=mailto:b@two.example"}},
		"_smtp._tls.bad.example.":   {TXT: []string{"v=TLSRPTv1; rua=nope"}},
		"_smtp._tls.other.example.": {TXT: []string{"v=TLSRPTv10; rua=mailto:a@other.example"}},
		"_smtp._tls.fail.example.":  {Err: errors.New("SERVFAIL")},
	}}
	ctx := context.Background()
	r, err := LookupRecord(ctx, res, "One.Example.")
	if err != nil || !reflect.DeepEqual(r.MailtoAddresses(), []string{"r@one.example"}) {
		t.Errorf("one.example: %+v, %v", r, err)
	}
	for domain, want := range map[string]error{
		"two.example":     ErrMultipleRecords,
		"bad.example":     ErrRecordSyntax,
		"other.example":   ErrNoRecord,
		"missing.example": ErrNoRecord,
		"fail.example":    ErrDNS,
	} {
		if _, err := LookupRecord(ctx, res, domain); !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", domain, err, want)
		}
	}
}

// TestParseRecordEdges pins behaviour the shared TXT grammar
// (internal/txtrecord) must keep for TLS-RPT (RFC 8460 §3).
func TestParseRecordEdges(t *testing.T) {
	for _, in := range []string{
		"v=TLSRPTv1; RUA=mailto:a@example.com",          // names are case-sensitive: no rua
		"v=TLSRPTv1; rua=mailto:a@example.com; e=1,2 3", // junk after an extension
		"v=TLSRPTv1; rua=mailto:a@example.com;\nx=1",    // LF is not WSP
		"v=TLSRPTv1 ; rua=mailto:a@example.com,;",       // empty URI before ';'
	} {
		if r, err := ParseRecord(in); !errors.Is(err, ErrRecordSyntax) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordSyntax", in, r, err)
		}
	}
	r, err := ParseRecord("v=TLSRPTv1; e=1; rua=mailto:a@example.com ,\thttps://r.example/; e=2,3; rua=mailto:b@example.com;")
	want := &Record{
		RUA:        []string{"mailto:a@example.com", "https://r.example/", "mailto:b@example.com"},
		Extensions: []Extension{{"e", "1"}, {"e", "2,3"}}, // ',' is an ordinary ext-value octet
	}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Errorf("ParseRecord = %+v, %v; want %+v", r, err, want)
	}
	// The first problem in the record is the one reported.
	if _, err := ParseRecord("v=TLSRPTv1; rua=nope; x"); err == nil || !strings.Contains(err.Error(), "no scheme") {
		t.Errorf("error = %v, want the URI's", err)
	}
}

func TestLookupRecordCandidates(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"_smtp._tls.wsp.example.":  {TXT: []string{"v=TLSRPTv1 ; rua=mailto:r@wsp.example"}},
		"_smtp._tls.bare.example.": {TXT: []string{"v=TLSRPTv1"}},
		"_smtp._tls.inv.example.":  {TXT: []string{"v=TLSRPTv1;", "v=TLSRPTv1; rua=mailto:r@inv.example"}},
		"_smtp._tls.fail.example.": {Err: errors.New("SERVFAIL")},
	}}
	ctx := context.Background()
	if r, err := LookupRecord(ctx, res, "wsp.example"); err != nil || !reflect.DeepEqual(r.RUA, []string{"mailto:r@wsp.example"}) {
		t.Errorf("wsp.example: %+v, %v", r, err)
	}
	for domain, want := range map[string]error{
		"bare.example": ErrNoRecord,        // no ';': not a candidate
		"inv.example":  ErrMultipleRecords, // an invalid candidate still counts
	} {
		if r, err := LookupRecord(ctx, res, domain); !errors.Is(err, want) || r != nil {
			t.Errorf("%s: %+v, %v; want %v", domain, r, err, want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := LookupRecord(cctx, res, "fail.example"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrDNS) {
		t.Errorf("canceled: %v", err)
	}
}
