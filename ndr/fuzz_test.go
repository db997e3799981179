package ndr

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse feeds arbitrary messages to Parse: it must not panic, must
// return either an error or at least one recipient, and must respect its
// size limit. The seed corpus runs under plain `go test`.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rfcSample))                                                                                                                                                               // RFC 1894/3464-style report, LF line ends
	f.Add([]byte(strings.ReplaceAll(rfcSample, "\n", "\r\n")))                                                                                                                             // the same with CRLF
	f.Add([]byte("Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;a@b\n"))                                                                                                // not multipart, one field
	f.Add([]byte("Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\n\n--x--"))                                                                   // empty status part
	f.Add([]byte("Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: multipart/mixed; boundary=x\n\n--x\n"))                                                                 // self-nested boundary
	f.Add([]byte("Content-Type: message/global-delivery-status\nContent-Transfer-Encoding: base64\n\nRmluYWwtUmVjaXBpZW50OiB1dGYtODsg44GCQGIKQWN0aW9uOiBmYWlsZWQKU3RhdHVzOiA1LjEuMQo=\n")) // base64 global status
	f.Add([]byte(" folded first line\n\nStatus: 5.1.1\n"))                                                                                                                                 // malformed top header
	f.Add([]byte("content-type: message/delivery-status\n\nAction: failed\n\tcontinued\n:\n;\nStatus: 9.9.9.9\n"))                                                                         // junk fields
	f.Add([]byte(""))                                                                                                                                                                      // empty input
	if data, err := buildSeed(); err == nil {
		f.Add(data) // our own Japanese report
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := Parser{MaxSize: 1 << 16}
		rep, err := p.Parse(bytes.NewReader(data))
		if err != nil {
			if rep != nil {
				t.Fatalf("report and error both returned")
			}
			return
		}
		if len(data) > 1<<16 {
			t.Fatalf("input of %d bytes accepted over the limit", len(data))
		}
		if len(rep.Recipients) == 0 {
			t.Fatalf("no error and no recipients")
		}
		// A parsed report's delivery-status must parse again the same way.
		again, err := ParseDeliveryStatus(renderFields(rep))
		if err != nil || len(again.Recipients) != len(rep.Recipients) {
			t.Fatalf("re-parse of rendered fields: %d recipients, %v", len(rep.Recipients), err)
		}
	})
}

// renderFields writes the fields of a parsed report back as a
// delivery-status body, without validation.
func renderFields(r *Report) []byte {
	var b bytes.Buffer
	cp := *r
	cp.Recipients = append([]Recipient(nil), r.Recipients...)
	if cp.ReportingMTA == "" {
		cp.ReportingMTA = "x"
	}
	for i := range cp.Recipients {
		if cp.Recipients[i].FinalRecipient == "" {
			cp.Recipients[i].FinalRecipient = "unknown"
		}
	}
	b.Write(cp.deliveryStatus())
	return b.Bytes()
}

func buildSeed() ([]byte, error) {
	r := fullReport("ja")
	return r.Build()
}

// FuzzDeliveryStatusFields targets the field-group parser alone.
func FuzzDeliveryStatusFields(f *testing.F) {
	f.Add([]byte("Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.1.1\r\n")) // minimal valid
	f.Add([]byte("Final-Recipient: rfc822;\n <a@b>\nAction: failed\nFinal-Recipient: rfc822; c@d\n"))                 // no blank line, folding
	f.Add([]byte("Diagnostic-Code: smtp; 550 x\nDiagnostic-Code: smtp; 550 y\n"))                                     // repeated field
	f.Add([]byte("\n\n\n: ; \n\t\n"))                                                                                 // only separators

	// A Diagnostic-Code folded over 5,000 lines, past maxParsedField.
	f.Add([]byte("Final-Recipient: rfc822; a@b\nDiagnostic-Code: smtp; 550" + strings.Repeat("\n y", 5000) + "\nStatus: 5.0.0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseDeliveryStatus(data)
		if err == nil && len(rep.Recipients) == 0 {
			t.Fatal("no error and no recipients")
		}
	})
}

// FuzzWriteField: whatever the text (as deliveryStatus cleans it: no
// control characters, lines trimmed, blank lines dropped), every line
// written stays within 998 octets (RFC 5322 §2.1.1), none is white space
// only (RFC 5322 §3.2.2; it would end an RFC 3464 group), valid UTF-8 stays
// valid, and unfolding gives back the same words.
func FuzzWriteField(f *testing.F) {
	f.Add("550 5.1.1 <user@example.com>: Recipient address rejected: User unknown in virtual mailbox table") // ordinary reply
	f.Add("550 5.1.1 no" + strings.Repeat(" ", 1100) + "y")                                                  // long run of spaces
	f.Add("550-first\r\n550-" + strings.Repeat("x", 1000) + "\r\n550 " + strings.Repeat("é", 500))           // long words, split
	f.Add(strings.Repeat("w"+strings.Repeat(" ", 77), 14))                                                   // runs at the fold width
	f.Fuzz(func(t *testing.T, s string) {
		var lines []string
		for _, l := range strings.FieldsFunc(s, func(c rune) bool { return c == '\r' || c == '\n' }) {
			if l = oneLine(l); l != "" {
				lines = append(lines, l)
			}
		}
		value := "smtp; " + strings.Join(lines, "\n")
		var b bytes.Buffer
		writeField(&b, "Diagnostic-Code", value)
		out := b.String()
		if !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("does not end in CRLF: %q", out)
		}
		for i, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if len(l) > 998 {
				t.Fatalf("line %d has %d octets", i+1, len(l))
			}
			if strings.Trim(l, " \t") == "" {
				t.Fatalf("line %d is white space only", i+1)
			}
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("line %d has a bare CR or LF", i+1)
			}
		}
		if utf8.ValidString(value) && !utf8.ValidString(out) {
			t.Fatalf("valid UTF-8 made invalid")
		}
		want := strings.Join(strings.Fields(value), "")
		got := strings.Join(strings.Fields(strings.TrimPrefix(strings.ReplaceAll(out, "\r\n", ""), "Diagnostic-Code:")), "")
		if got != want {
			t.Fatalf("unfolded words differ:\n got %.80q\nwant %.80q", got, want)
		}
	})
}

// TestFuzzSeedsFromSamples runs the fuzz property over the shared samples
// (skipped when they are absent).
func TestFuzzSeedsFromSamples(t *testing.T) {
	for _, path := range sampleDSNs(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Parse(bytes.NewReader(data))
		if err != nil {
			continue
		}
		again, err := ParseDeliveryStatus(renderFields(rep))
		if err != nil || len(again.Recipients) != len(rep.Recipients) {
			t.Errorf("%s: rendered fields re-parse to %v, %v", filepath.Base(path), again, err)
		}
	}
}

// FuzzParseNotify: the NOTIFY value of RCPT TO comes from the client. It
// must be rejected with ErrBadNotify or parse to a value that never
// combines NEVER with another keyword and prints back to itself.
func FuzzParseNotify(f *testing.F) {
	f.Add("NEVER")                 // alone
	f.Add("success,FAILURE,delay") // all three, mixed case
	f.Add("NEVER,SUCCESS")         // forbidden combination
	f.Add("FAILURE,,DELAY")        // empty keyword
	f.Add(" FAILURE ")             // spaces
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNotify(s)
		if err != nil {
			if !errors.Is(err, ErrBadNotify) {
				t.Fatalf("ParseNotify(%q) error %v is not ErrBadNotify", s, err)
			}
			return
		}
		if n&NotifyNever != 0 && n != NotifyNever {
			t.Fatalf("ParseNotify(%q) = %b combines NEVER", s, n)
		}
		if back, err := ParseNotify(n.String()); err != nil || back != n {
			t.Fatalf("ParseNotify(%q) = %q, which parses back to %v, %v", s, n.String(), back, err)
		}
	})
}
