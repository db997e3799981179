package transport

import (
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
)

// TestAddressControlCharacters sends MAIL and RCPT commands carrying control
// characters (C0, DEL, C1) and invalid UTF-8 as exact bytes, in plaintext
// and under STARTTLS: the sender is refused with 501 5.1.7, a recipient or
// its ORCPT with 501 5.1.3, and nothing reaches the Handler. Printable UTF-8
// addresses are still accepted. The bytes below are those go-smtp v0.25.1
// passes to the Session (its parser refuses a tab or space only in an
// unquoted local part, and checks an rfc822 ORCPT but not a utf-8 one).
func TestAddressControlCharacters(t *testing.T) {
	mail := []struct{ name, arg string }{
		{"NUL in local part", "<a\x00b@example.org>"},
		{"NUL in domain", "<ab@exa\x00mple.org>"},
		{"SOH in quoted local part", "<\"a\x01b\"@example.org>"},
		{"tab in quoted local part", "<\"a\tb\"@example.org>"},
		{"bare CR", "<a\rb@example.org>"},
		{"ESC", "<a\x1bb@example.org>"},
		{"DEL", "<a\x7fb@example.org>"},
		{"C1 NEL (U+0085)", "<a\u0085b@example.org> SMTPUTF8"},
		{"C1 CSI (U+009B)", "<a\u009bb@example.org> SMTPUTF8"},
		{"invalid UTF-8", "<a\xffb@example.org> SMTPUTF8"},
		{"truncated UTF-8", "<a\xc3@example.org> SMTPUTF8"},
	}
	rcpt := []struct{ name, arg string }{
		{"NUL", "<a\x00b@example.net>"},
		{"NUL in domain", "<ab@example.n\x00et>"},
		{"tab in quoted local part", "<\"a\tb\"@example.net>"},
		{"DEL", "<a\x7fb@example.net>"},
		{"C1 NEL (U+0085)", "<a\u0085b@example.net>"},
		{"invalid UTF-8", "<a\xfeb@example.net>"},
		{"ORCPT utf-8 xtext tab", "<ok@example.net> ORCPT=utf-8;a\\x{09}b@example.net"},
		{"ORCPT utf-8 xtext DEL", "<ok@example.net> ORCPT=utf-8;a\\x{7F}b@example.net"},
		{"ORCPT utf-8 xtext C1", "<ok@example.net> ORCPT=utf-8;a\\x{85}b@example.net"},
		// Raw U+0091: a raw U+0085 is whitespace to go-smtp's argument
		// splitter, which then refuses the remainder itself (500 5.5.4).
		{"ORCPT utf-8 raw C1", "<ok@example.net> ORCPT=utf-8;a\u0091b@example.net"},
		{"ORCPT utf-8 invalid UTF-8", "<ok@example.net> ORCPT=utf-8;a\xffb@example.net"},
	}
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
			d := modeDialogue(t, ts, mode)
			for _, c := range mail {
				if got := d.cmd("MAIL FROM:" + c.arg); !strings.HasPrefix(got, "501 5.1.7 ") {
					t.Errorf("MAIL %s %q: %q, want 501 5.1.7", c.name, c.arg, got)
					d.cmd("RSET")
				}
			}
			d.expect("MAIL FROM:<a@example.org>", "250 ")
			for _, c := range rcpt {
				if got := d.cmd("RCPT TO:" + c.arg); !strings.HasPrefix(got, "501 5.1.3 ") {
					t.Errorf("RCPT %s %q: %q, want 501 5.1.3", c.name, c.arg, got)
				}
			}
			d.expect("DATA", "503 ") // no recipient was accepted (RFC 5321 §4.1.4)
			d.expect("RSET", "250 ")
			// Printable UTF-8 is still an address.
			d.expect("MAIL FROM:<bö@example.org> SMTPUTF8", "250 ")
			d.expect("RCPT TO:<ü@example.net> ORCPT=utf-8;\\x{FC}@example.net", "250 ")
			d.expect("RCPT TO:<c@example.net> ORCPT=rfc822;c+2Bx@example.net", "250 ")
			d.expect("DATA", "354 ")
			d.send("Subject: x\r\n\r\nbody\r\n.\r\n")
			if got := d.read(); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("DATA: %q", got)
			}
			msgs := ts.rec.all()
			if len(msgs) != 1 {
				t.Fatalf("%d messages delivered, want 1", len(msgs))
			}
			env := msgs[0].env
			if env.From != "bö@example.org" || len(env.Recipients) != 2 || env.Recipients[0].ORCPT != "utf-8;ü@example.net" || env.Recipients[1].ORCPT != "rfc822;c+x@example.net" {
				t.Errorf("envelope %q %+v", env.From, env.Recipients)
			}
		})
	}
}

// TestBadAddressText is the table of the pure check behind the 501 replies.
func TestBadAddressText(t *testing.T) {
	for s, bad := range map[string]bool{
		"":                     false,
		"a@example.org":        false,
		"bö@例え.jp":             false,
		"\"a b\"@example.org":  false,
		"a\x00b":               true,
		"a\tb":                 true,
		"a\r":                  true,
		"a\n":                  true,
		"a\x1f":                true,
		"a\x7f":                true,
		"a\u0080":              true,
		"a\u009f":              true,
		"a\u00a0":              false, // NO-BREAK SPACE is printable
		"a\xff":                true,
		"a\xc3":                true,
		"\xed\xa0\x80@example": true, // encoded surrogate
	} {
		if got := badAddressText(s); got != bad {
			t.Errorf("badAddressText(%q) = %v, want %v", s, got, bad)
		}
	}
}
