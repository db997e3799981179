package transport

import (
	"strings"
	"testing"
	"unicode"
)

// FuzzParseSenderLogins: the parser never panics; its errors name the
// source and a line; a table it accepts has well-formed keys and logins,
// and every login it lists for an address owns that address.
func FuzzParseSenderLogins(f *testing.F) {
	f.Add(testSenderLogins)
	f.Add("a@b c\n d,e\n#x\n@b f g\n")
	f.Add("  x\n")
	f.Add("a@b\n")
	f.Add("A@B x\na@b y\n")
	f.Add("a@b x\x00\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseSenderLogins("senders", strings.NewReader(in))
		if err != nil {
			if !strings.Contains(err.Error(), "senders line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		for key, logins := range m.owners {
			if key != foldSender(key) || !validSenderKey(key) {
				t.Fatalf("key %q", key)
			}
			for _, l := range logins {
				if l == "" || strings.ContainsFunc(l, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) || badAddressText(l) {
					t.Fatalf("login %q of %q", l, key)
				}
				if !strings.HasPrefix(key, "@") && !m.Owns(l, key) {
					t.Fatalf("%q listed for %q but does not own it", l, key)
				}
				if !m.Owns(l, "") {
					t.Fatalf("%q may not use the null reverse-path", l)
				}
			}
		}
	})
}
