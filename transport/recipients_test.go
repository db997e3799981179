package transport

import (
	"errors"
	"strings"
	"testing"
)

func localTest(d string) bool { return d == "localhost" || d == "example.test" }

// The table holds postmaster, the file's bare names in every local domain
// and its addresses as written, and Add's names and local addresses;
// malformed lines are refused with the file name and line.
func TestParseLocalRecipients(t *testing.T) {
	full, err := ParseLocalRecipients("r", strings.NewReader("# comment\n\n  Sales  \nList@LocalHost.\nböb@example.test\n"), localTest)
	if err != nil {
		t.Fatal(err)
	}
	full.Add("alice", "carol@example.test", "dave@elsewhere.example")
	for addr, want := range map[string]bool{
		"sales@localhost": true, "SALES@example.test": true, "list@localhost": true, "list@example.test": false,
		"böb@example.test": true, "BÖB@example.test": false, "alice@localhost": true, "carol@example.test": true,
		"carol@localhost": false, "dave@elsewhere.example": false, "postmaster@example.test": true, "postmaster": true,
		"sales@elsewhere.example": false, "nobody@localhost": false, "": false,
	} {
		if got := full.Has(addr); got != want {
			t.Errorf("Has(%q) = %v, want %v", addr, got, want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"ok\nbad name\n", "r line 2:"},
		{"a@b@localhost\n", "r line 1:"},
		{"\n\nx@elsewhere.example\n", "r line 3: \"x@elsewhere.example\": elsewhere.example is not a local domain"},
		{"@localhost\n", "empty local part"},
		{strings.Repeat("a", 65) + "\n", "longer than 64"},
		{"a\x00b\n", "r line 1: \"a?b\""},
		{"\xff\n", "not UTF-8"},
		{"<a>\n", "special character"},
		{strings.Repeat("a", 5000) + "\n", "r line 1:"},
	} {
		if _, err := ParseLocalRecipients("r", strings.NewReader(tc.in), localTest); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLocalRecipients(%.40q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseLocalRecipients: whatever a recipients file holds, parsing does not
// panic, and every entry it accepts is a printable address in a local
// domain or a bare name.
func FuzzParseLocalRecipients(f *testing.F) {
	f.Add("# comment\nsales\nlist@localhost\n")
	f.Add("x@elsewhere.example\n") // not local
	f.Add("a b\n")                 // white space
	f.Add("\xff\n")                // not UTF-8
	f.Fuzz(func(t *testing.T, in string) {
		tab, err := ParseLocalRecipients("f", strings.NewReader(in), localTest)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f line ") {
				t.Fatalf("error without a line number: %v", err)
			}
			return
		}
		for k := range tab.addrs {
			if printableText(k) != k || !localTest(k[strings.LastIndexByte(k, '@')+1:]) {
				t.Fatalf("accepted address %q", k)
			}
		}
		for k := range tab.names {
			if printableText(k) != k || strings.Contains(k, "@") || k == "" {
				t.Fatalf("accepted name %q", k)
			}
		}
	})
}

// Check refuses an unknown local recipient with 550 5.1.1 and Postfix's
// text, the address made printable, wrapping ErrUnknownRecipient.
func TestLocalRecipientsCheck(t *testing.T) {
	tab := NewLocalRecipients(localTest)
	if err := tab.Check("Postmaster@LOCALHOST."); err != nil {
		t.Fatalf("postmaster: %v", err)
	}
	err := tab.Check("no\x01body@localhost")
	var te *Error
	if !errors.As(err, &te) || !errors.Is(err, ErrUnknownRecipient) || te.Code != 550 || te.EnhancedCode != (EnhancedCode{5, 1, 1}) ||
		te.Message != "<no?body@localhost>: Recipient address rejected: User unknown in local recipient table" {
		t.Fatalf("Check: %#v", err)
	}
}
