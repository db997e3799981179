package ndr

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/lineartest"
)

// TestWriteFieldLinear: a remote server's reply ending in a long run of
// spaces (the client accepts 1 MiB replies) costs writeField time linear in
// its length; each space once grew the same line.
func TestWriteFieldLinear(t *testing.T) {
	var b bytes.Buffer
	lineartest.Check(t, 2<<10, 16, func(n int) {
		b.Reset()
		writeField(&b, "Diagnostic-Code", "smtp; 550 5.1.1 no"+strings.Repeat(" ", n)+"y")
	})
}

// TestReadGroupsLinear: a Diagnostic-Code folded over many short lines
// costs readGroups time linear in its length; each line was once appended
// to a growing string.
func TestReadGroupsLinear(t *testing.T) {
	head := "Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: smtp; 550"
	lineartest.Check(t, 4<<10, 16, func(n int) {
		g := readGroups([]byte(head + strings.Repeat("\r\n y", n/4)))
		if len(g) != 2 || len(g[1]) != 4 {
			t.Fatalf("groups %d", len(g))
		}
	})
}

// TestWriteFieldShapes: whatever the runs of spaces and long words, every
// line stays within 998 octets (RFC 5322 §2.1.1), no continuation line is
// white space only (RFC 5322 §3.2.2; it would also end an RFC 3464 group),
// lines fold at 78 characters where the words allow, and unfolding gives
// back the words in order.
func TestWriteFieldShapes(t *testing.T) {
	for name, value := range map[string]string{
		"normal":            "smtp; 550 5.1.1 <user@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
		"double spaces":     "smtp; 550  5.1.1  no  such  user  here,  sorry,  please  check  the  address  and  try  again",
		"run of spaces":     "smtp; 550 5.1.1 no" + strings.Repeat(" ", 100000) + "y",
		"runs between":      strings.Repeat("word"+strings.Repeat(" ", 77), 50),
		"run after a line":  "smtp; 550-first\n" + strings.Repeat(" ", 3000) + "second",
		"long word":         "smtp; 550 " + strings.Repeat("x", 5000) + strings.Repeat(" ", 2000) + "z",
		"long UTF-8 word":   "utf-8; 550 " + strings.Repeat("é", 2000),
		"spaces then words": "smtp;" + strings.Repeat(" ", 200) + strings.Repeat(" ab", 100),
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			writeField(&b, "Diagnostic-Code", value)
			out := b.String()
			if !strings.HasSuffix(out, "\r\n") {
				t.Fatalf("does not end in CRLF: %.60q", out)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n")
			for i, l := range lines {
				if len(l) > 998 {
					t.Errorf("line %d has %d octets", i+1, len(l))
				}
				if strings.TrimSpace(l) == "" {
					t.Errorf("line %d is white space only", i+1)
				}
				if i > 0 && l[0] != ' ' {
					t.Errorf("line %d does not start with a space", i+1)
				}
				// A line over 78 is one word (or piece of one) only.
				if len(l) > 78 && len(strings.Fields(l)) > 1 && !(i == 0 && len(strings.Fields(l)) == 2) {
					t.Errorf("line %d has %d characters and several words: %.60q", i+1, len(l), l)
				}
				if !utf8.ValidString(l) {
					t.Errorf("line %d is not valid UTF-8", i+1)
				}
			}
			want := strings.Fields(strings.ReplaceAll(value, "\n", " "))
			got := strings.Fields(strings.TrimPrefix(strings.ReplaceAll(out, "\r\n", ""), "Diagnostic-Code:"))
			if strings.Join(got, "") != strings.Join(want, "") {
				t.Errorf("unfolded text differs: %.80q", got)
			}
			if len(value) < 200 && strings.Count(value, "  ") == 0 {
				// Normal text: lines fold at 78 exactly as before.
				for i, l := range lines {
					if len(l) > 78 {
						t.Errorf("line %d has %d characters", i+1, len(l))
					}
				}
			}
		})
	}
}

// TestDiagnosticCapped: a 1 MiB reply becomes at most maxDiagnostic octets
// of diagnostic text, in the Diagnostic-Code field and in the human part,
// with the cut marked; the report stays grammatical and parses back.
func TestDiagnosticCapped(t *testing.T) {
	for name, tc := range map[string]struct {
		reply     string
		wantMark  bool
		wantStart string
	}{
		"trailing spaces":  {"550 5.1.1 no" + strings.Repeat(" ", 1<<20), false, "550 5.1.1 no"},
		"long text":        {"550 5.1.1 " + strings.Repeat("no such user ", 1<<20/13), true, "550 5.1.1 no such user no such user"},
		"many lines":       {strings.Repeat("550-5.1.1 no such user\n", 1<<20/23) + "550 5.1.1 end", true, "550-5.1.1 no such user 550-5.1.1"},
		"just under limit": {"550 " + strings.Repeat("x", maxDiagnostic-4), false, "550 xxx"},
	} {
		t.Run(name, func(t *testing.T) {
			r := fullReport("en")
			r.Recipients[0].DiagnosticCode = tc.reply
			msg := buildOrFatal(t, r)
			if len(msg) > 64<<10 {
				t.Errorf("report of %d octets", len(msg))
			}
			parts := mimeParts(t, msg)
			checkDeliveryStatusGrammar(t, parts[1].body)
			back, err := ParseDeliveryStatus(parts[1].body)
			if err != nil {
				t.Fatal(err)
			}
			got := back.Recipients[0].DiagnosticCode
			if !strings.HasPrefix(got, tc.wantStart) {
				t.Errorf("diagnostic %.60q", got)
			}
			if len(got) > maxDiagnostic+len(truncatedMark)+maxDiagnostic/78 {
				t.Errorf("diagnostic of %d octets", len(got))
			}
			if strings.HasSuffix(got, truncatedMark) != tc.wantMark {
				t.Errorf("diagnostic ends %q, want mark %v", got[max(0, len(got)-30):], tc.wantMark)
			}
			human := unwrap(string(parts[0].body))
			if len(human) > 2*maxDiagnostic+2000 {
				t.Errorf("human part of %d octets", len(human))
			}
			if strings.Contains(human, strings.TrimSpace(truncatedMark)) != tc.wantMark {
				t.Errorf("human part mark, want %v", tc.wantMark)
			}
		})
	}
}

// TestReadGroupsCapped: a field value read back is cut at maxParsedField
// with the mark, however it is folded; a shorter value is unfolded whole.
func TestReadGroupsCapped(t *testing.T) {
	for name, tc := range map[string]struct {
		value    string
		wantLen  int
		wantMark bool
	}{
		"one long line":   {"smtp; " + strings.Repeat("x", 1<<20), maxParsedField + len(truncatedMark), true},
		"folded":          {"smtp; 550" + strings.Repeat("\r\n y", 1<<13), maxParsedField + len(truncatedMark), true},
		"folded under":    {"smtp; 550" + strings.Repeat("\r\n\ty", 100), len("smtp; 550") + 200, false},
		"exactly the cap": {strings.Repeat("z", maxParsedField), maxParsedField, false},
		"folded UTF-8":    {"utf-8; " + strings.Repeat("\r\n éé", 1<<12), 0, true},
	} {
		t.Run(name, func(t *testing.T) {
			g := readGroups([]byte("Final-Recipient: rfc822; a@b\r\nDiagnostic-Code: " + tc.value + "\r\nStatus: 5.0.0\r\n"))
			if len(g) != 1 || len(g[0]) != 3 || g[0][2].name != "status" {
				t.Fatalf("groups %v", g)
			}
			v := g[0][1].value
			if tc.wantLen != 0 && len(v) != tc.wantLen {
				t.Errorf("value of %d octets, want %d", len(v), tc.wantLen)
			}
			if strings.HasSuffix(v, truncatedMark) != tc.wantMark {
				t.Errorf("value ends %q, want mark %v", v[max(0, len(v)-30):], tc.wantMark)
			}
			if !utf8.ValidString(v) {
				t.Errorf("value is not valid UTF-8")
			}
		})
	}
}
