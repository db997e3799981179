package txtrecord

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"
)

var (
	errSyntax   = errors.New("test: syntax")
	errNone     = errors.New("test: none")
	errMultiple = errors.New("test: multiple")
	errDNS      = errors.New("test: dns")
)

// testFormat has a list field "l", like RFC 8460's rua.
func testFormat() Format {
	return Format{
		Version:            "v=T1",
		ListFields:         []string{"l"},
		ErrSyntax:          errSyntax,
		ErrNoRecord:        errNone,
		ErrMultipleRecords: errMultiple,
		ErrDNS:             errDNS,
	}
}

// collect gathers all fields, or the first error.
func collect(f Format, txt string) ([]Field, error) {
	var l []Field
	for fld, err := range f.Fields(txt) {
		if err != nil {
			return nil, err
		}
		l = append(l, fld)
	}
	return l, nil
}

func TestFields(t *testing.T) {
	good := []struct {
		in   string
		want []Field
	}{
		{"v=T1;a=1", []Field{{"a", "1"}}},
		{"v=T1; a=1;", []Field{{"a", "1"}}},
		{"v=T1 ;\ta=1 ; b=2 ;\t", []Field{{"a", "1"}, {"b", "2"}}},
		{"v=T1; a=1; a=2", []Field{{"a", "1"}, {"a", "2"}}},                   // repeats kept, caller decides
		{"v=T1; a=", []Field{{"a", ""}}},                                      // values unchecked
		{"v=T1; a=x=y", []Field{{"a", "x=y"}}},                                // value runs to WSP or ';'
		{"v=T1; a=1,2", []Field{{"a", "1,2"}}},                                // not a list field
		{"v=T1; l=1,2", []Field{{"l", "1"}, {"l", "2"}}},                      // list field
		{"v=T1; l=1 ,\t2 ; l=3", []Field{{"l", "1"}, {"l", "2"}, {"l", "3"}}}, // WSP around ','
		{"v=T1; l=1,", []Field{{"l", "1"}, {"l", ""}}},                        // empty element, caller rejects
		{"v=T1; l=", []Field{{"l", ""}}},
		{"v=T1; L=1,2", []Field{{"L", "1,2"}}}, // names are case-sensitive
		{"v=T1; " + strings.Repeat("n", 32) + "=1", []Field{{strings.Repeat("n", 32), "1"}}},
		{"v=T1; 0a_-.=1", []Field{{"0a_-.", "1"}}},
	}
	for _, tc := range good {
		got, err := collect(testFormat(), tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Fields(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []string{
		"",
		"v=T1",          // no fields
		"v=T1;",         // no fields
		"v=T1 ; ",       // no fields
		"V=T1; a=1",     // version is case-sensitive
		"v=T2; a=1",     // other version
		"v=T1x; a=1",    // version followed by junk
		"v=T1 a=1",      // no delimiter
		"v=T1; a=1 b=2", // no delimiter between fields
		"v=T1; a=1;; b=2",
		"v=T1; a",       // no '='
		"v=T1; a;b=1",   // no '=' before ';'
		"v=T1; a b=1",   // WSP in name
		"v=T1; =1",      // empty name
		"v=T1; _a=1",    // name starts with '_'
		"v=T1; a\x00=1", // control in name
		"v=T1; " + strings.Repeat("n", 33) + "=1",
		"v=T1; l=1 2",    // WSP inside a list
		"v=T1; l=1, 2 x", // junk after a list
		"v=T1;\na=1",     // LF is not WSP
	}
	for _, in := range bad {
		if got, err := collect(testFormat(), in); !errors.Is(err, errSyntax) {
			t.Errorf("Fields(%q) = %q, %v; want errSyntax", in, got, err)
		}
	}
}

// TestFieldsOrder checks that the fields before a syntax error are yielded
// first, so that a caller's own check on an earlier value reports first.
func TestFieldsOrder(t *testing.T) {
	var names []string
	var last error
	for fld, err := range testFormat().Fields("v=T1; a=1; l=2,3; b=4 x") {
		if err != nil {
			last = err
			break
		}
		names = append(names, fld.Name+"="+fld.Value)
	}
	if want := []string{"a=1", "l=2", "l=3", "b=4"}; !reflect.DeepEqual(names, want) {
		t.Errorf("fields = %q, want %q", names, want)
	}
	if !errors.Is(last, errSyntax) || !strings.Contains(last.Error(), `expected ';' at "x"`) {
		t.Errorf("error = %v", last)
	}
	// Stopping early is honoured.
	n := 0
	for range testFormat().Fields("v=T1; a=1; b=2; l=3,4") {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break: %d iterations", n)
	}
}

func TestIsCandidate(t *testing.T) {
	for in, want := range map[string]bool{
		"v=T1;":          true,
		"v=T1; a=1":      true,
		"v=T1 \t; a=1":   true, // *WSP before ';'
		"v=T1":           false,
		"v=T1 a=1":       false,
		"v=T10; a=1":     false,
		"v=t1; a=1":      false,
		" v=T1; a=1":     false,
		"v=spf1 -all":    false,
		"":               false,
		"v=T1\n; a=1":    false,
		"v=T1;garbage;;": true, // a candidate, invalid when parsed
	} {
		if got := testFormat().IsCandidate(in); got != want {
			t.Errorf("IsCandidate(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSelect(t *testing.T) {
	f := testFormat()
	got, err := f.Select([]string{"v=spf1 -all", "v=T1; a=1", "v=T10; a=2", "v=T1"})
	if err != nil || got != "v=T1; a=1" {
		t.Errorf("Select = %q, %v", got, err)
	}
	for _, tc := range []struct {
		txts []string
		want error
	}{
		{nil, errNone},
		{[]string{"v=spf1 -all", "v=T2; a=1"}, errNone},
		{[]string{"v=T1; a=1", "v=T1 ; a=2"}, errMultiple},
		{[]string{"v=T1; a=1", "v=T1; a=1"}, errMultiple}, // even when equal
	} {
		if got, err := f.Select(tc.txts); err != tc.want || got != "" {
			t.Errorf("Select(%q) = %q, %v; want %v", tc.txts, got, err, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	res := &mockdns.Resolver{Zones: map[string]mockdns.Zone{
		"_t.one.example.":   {TXT: []string{"v=spf1 -all", "v=T1; a=1"}},
		"_t.two.example.":   {TXT: []string{"v=T1; a=1", "v=T1; a=2"}},
		"_t.other.example.": {TXT: []string{"v=T10; a=1"}},
		"_t.fail.example.":  {Err: errors.New("SERVFAIL")},
	}}
	f := testFormat()
	ctx := context.Background()
	if got, err := f.Lookup(ctx, res, "_t.one.example."); err != nil || got != "v=T1; a=1" {
		t.Errorf("one: %q, %v", got, err)
	}
	for name, want := range map[string]error{
		"_t.two.example.":     errMultiple,
		"_t.other.example.":   errNone,
		"_t.missing.example.": errNone, // NXDOMAIN
		"_t.fail.example.":    errDNS,
	} {
		if got, err := f.Lookup(ctx, res, name); !errors.Is(err, want) || got != "" {
			t.Errorf("%s: %q, %v; want %v", name, got, err, want)
		}
	}

	// A failure after the context ended is the context's error, not ErrDNS.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	r := resolverFunc(func(ctx context.Context, name string) ([]string, error) {
		return nil, &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true}
	})
	if _, err := f.Lookup(cctx, r, "_t.one.example."); !errors.Is(err, context.Canceled) || errors.Is(err, errDNS) {
		t.Errorf("canceled: %v", err)
	}
	if _, err := f.Lookup(ctx, r, "_t.one.example."); !errors.Is(err, errDNS) {
		t.Errorf("timeout: %v", err)
	}
	// Not found reported as a *net.DNSError is ErrNoRecord.
	nf := resolverFunc(func(ctx context.Context, name string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	})
	if _, err := f.Lookup(ctx, nf, "_t.one.example."); err != errNone {
		t.Errorf("not found: %v", err)
	}
}

type resolverFunc func(ctx context.Context, name string) ([]string, error)

func (f resolverFunc) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return f(ctx, name)
}

func TestIsExtNameValue(t *testing.T) {
	for in, want := range map[string]bool{
		"a": true, "0": true, "a_b-c.d": true, strings.Repeat("x", 32): true,
		"": false, "_a": false, "-a": false, ".a": false, "a b": false, "a=b": false,
		"é": false, strings.Repeat("x", 33): false,
	} {
		if got := IsExtName(in); got != want {
			t.Errorf("IsExtName(%q) = %v", in, got)
		}
	}
	for in, want := range map[string]bool{
		"a": true, "!~:<>,": true, "mailto:x@y": true,
		"": false, "a b": false, "a;b": false, "a=b": false, "\x7f": false, "\t": false, "é": false,
	} {
		if got := IsExtValue(in); got != want {
			t.Errorf("IsExtValue(%q) = %v", in, got)
		}
	}
}
