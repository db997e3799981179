package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// FuzzParseTable checks that ParseTable never panics, that its errors are
// *ParseError values with a line inside the input, and that any table it
// accepts prints (Table.String) to text that parses back to the same
// entries, and that every entry's key looks itself up.
func FuzzParseTable(f *testing.F) {
	f.Add("example.com encrypt\n")                                                            // exact domain
	f.Add(".example.com verify on-failure=bounce\n")                                          // parent key, extension
	f.Add("[mx.example.net]:587 secure match=example.net:.example.net protocols=>=TLSv1.3\n") // the example
	f.Add("[2001:db8::1] encrypt\n[192.0.2.1]:25 dane-only\n")                                // IP next hops
	f.Add("x secure\n  match=a.example,nexthop\n\tprotocols=!SSLv2:!TLSv1.2\n")               // continuation lines
	f.Add("# comment\n\n* may # trailing comment\r\n")                                        // comments, CRLF, default
	f.Add("legacy.example none override=yes\nt.example verify mode=testing\n")                // override, testing
	f.Add("a encrpyt\nb fingerprint\nb may\nb may\n")                                         // several errors
	f.Add("  orphan continuation\n")                                                          // continuation first
	f.Add("x encrypt protocols=<=TLSv1.2\n")                                                  // maximum version
	f.Add("[h]:0 may\n[h]:65536 may\n[h may\nh:25 may\n")                                     // bad next-hop keys
	f.Add("X.Example. Secure MATCH=A.example:.B.example\nx.example may\n")                    // case folding duplicate
	f.Add("\x00 may\n\xff\xfe encrypt\n")                                                     // binary junk
	f.Fuzz(func(t *testing.T, text string) {
		tb, err := ParseTable(strings.NewReader(text), "fuzz")
		if err != nil {
			lines := strings.Count(text, "\n") + 2
			var errs []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			} else {
				errs = []error{err}
			}
			for _, e := range errs {
				var pe *ParseError
				if !errors.As(e, &pe) {
					t.Fatalf("error %T is not a *ParseError: %v", e, e)
				}
				if pe.Line < 1 || pe.Line > lines || pe.File != "fuzz" || pe.Msg == "" {
					t.Fatalf("bad ParseError %+v for %d-line input", pe, lines)
				}
			}
			return
		}
		out := tb.String()
		tb2, err := ParseTable(strings.NewReader(out), "fuzz")
		if err != nil {
			t.Fatalf("re-parsing the printed table failed: %v\ninput:\n%q\nprinted:\n%s", err, text, out)
		}
		if !sameEntries(tb.Entries(), tb2.Entries()) {
			t.Fatalf("round trip changed the table:\n%v\n%v", tb.Entries(), tb2.Entries())
		}
		if out2 := tb2.String(); out2 != out {
			t.Fatalf("printing is not stable:\n%s\n%s", out, out2)
		}
		ctx := context.Background()
		keys := map[string]bool{}
		for _, e := range tb.Entries() {
			keys[e.Key] = true
		}
		for _, e := range tb.Entries() {
			// Exact domain keys and next-hop keys find themselves, except
			// "[h]", which a port-25 lookup finds only when "[h]:25" is absent.
			if e.Key == DefaultKey || strings.HasPrefix(e.Key, ".") || keys[e.Key+":25"] {
				continue
			}
			r, err := tb.Lookup(ctx, e.Key)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", e.Key, err)
			}
			if r.Level != e.Level || r.MinVersion != e.MinVersion || r.OnFailure != e.OnFailure || r.Mode != e.Mode ||
				!strings.Contains(r.Reason, " entry "+e.Key) {
				t.Fatalf("Lookup(%q) = %v, entry %v", e.Key, r, e)
			}
		}
	})
}
