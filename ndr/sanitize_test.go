package ndr

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// hasControl reports whether b, outside CRLF line ends, holds a C0 control
// (tab included), DEL, a C1 control or invalid UTF-8.
func hasControl(b []byte) bool {
	s := strings.ReplaceAll(string(b), "\r\n", "")
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return true
		}
	}
	return false
}

// TestControlCharactersSanitised: control characters and invalid UTF-8 in
// what a report takes from the envelope (the sender, the final and original
// recipients, the ENVID, the client's HELO name as Received-From-MTA) and
// from the remote server (Remote-MTA, the diagnostic) reach neither the
// header, nor the delivery-status fields, nor the human-readable part: each
// becomes '?' (a line break or tab in free text becomes a space), and the
// report still parses.
func TestControlCharactersSanitised(t *testing.T) {
	junk := "\x00\x01\t\x1b\x7f\u0085\u009b\xff"
	tests := []struct {
		name  string
		set   func(r *Report)
		field string // a delivery-status line the report must contain
	}{
		{"Sender", func(r *Report) { r.Sender = "al" + junk + "ice@example.com" }, ""},
		{"FinalRecipient", func(r *Report) { r.Recipients[0].FinalRecipient = "b" + junk + "ob@legacy.example" },
			"Final-Recipient: rfc822; b????????ob@legacy.example"},
		{"FinalRecipient UTF-8", func(r *Report) { r.Recipients[0].FinalRecipient = "ボ\x00ブ\u0085@例え.jp" },
			"Final-Recipient: utf-8; ボ?ブ?@例え.jp"},
		{"OriginalRecipient", func(r *Report) { r.Recipients[0].OriginalRecipient = "utf-8;b" + junk + "ob@legacy.example" },
			"Original-Recipient: utf-8; b????????ob@legacy.example"},
		{"OriginalRecipient untyped", func(r *Report) { r.Recipients[0].OriginalRecipient = "b\x00ob@legacy.example" },
			"Original-Recipient: rfc822; b?ob@legacy.example"},
		{"OriginalEnvelopeID", func(r *Report) { r.OriginalEnvelopeID = "QQ" + junk + "1" }, "Original-Envelope-Id: QQ????????1"},
		{"ReceivedFromMTA (HELO)", func(r *Report) { r.ReceivedFromMTA = "client\x00\x1b[31m.example" }, "Received-From-MTA: dns; client??[31m.example"},
		{"RemoteMTA", func(r *Report) { r.Recipients[0].RemoteMTA = "mx\x00.legacy.example" }, "Remote-MTA: dns; mx?.legacy.example"},
		{"DiagnosticCode", func(r *Report) { r.Recipients[0].DiagnosticCode = "550 5.1.1 <b\x00ob>\x07 unknown\u0085user" },
			"Diagnostic-Code: smtp; 550 5.1.1 <b?ob>? unknown?user"},
		{"FinalLogID", func(r *Report) { r.Recipients[0].FinalLogID = "4F\x002A" }, "Final-Log-Id: 4F?2A"},
	}
	for _, tc := range tests {
		for _, lang := range []string{"en", "ja"} {
			t.Run(tc.name+"/"+lang, func(t *testing.T) {
				r := fullReport(lang)
				tc.set(r)
				msg := buildOrFatal(t, r)
				hdr, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
				if hasControl(hdr) {
					t.Errorf("control character in the header:\n%q", hdr)
				}
				parts := mimeParts(t, msg)
				if hasControl(parts[0].body) {
					t.Errorf("control character in the human part:\n%q", parts[0].body)
				}
				if hasControl(parts[1].body) {
					t.Errorf("control character in the delivery-status:\n%q", parts[1].body)
				}
				if tc.field != "" && !bytes.Contains(parts[1].body, []byte("\r\n"+tc.field+"\r\n")) && !bytes.HasPrefix(parts[1].body, []byte(tc.field+"\r\n")) {
					t.Errorf("want line %q in:\n%s", tc.field, parts[1].body)
				}
				checkDeliveryStatusGrammar(t, parts[1].body)
				if _, err := Parse(bytes.NewReader(msg)); err != nil {
					t.Errorf("Parse: %v", err)
				}
			})
		}
	}
}

// TestSanitiseTables is the table of the two pure functions: oneLine for
// free text, printableAddr for addresses and identifiers.
func TestSanitiseTables(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":          "plain text",
		" a\r\nb\tc ":         "a  b c",
		"a\x00b\x1bc\x7fd":    "a?b?c?d",
		"a\u0085b\u009fc":     "a?b?c",
		"a\xffb\xc3":          "a?b?",
		"ボブ\u00a0@例え.jp":      "ボブ\u00a0@例え.jp",
		"\ufffd is a char":    "\ufffd is a char",
		"\xed\xa0\x80 surrog": "??? surrog",
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"bob@example.com":  "bob@example.com",
		" <bob@x> ":        "<bob@x>",
		"b\r\nob@x":        "b??ob@x",
		"b\tob@x":          "b?ob@x",
		"b\x00\u0085\xff@": "b???@",
		"\"b b\"@x":        "\"b b\"@x",
	} {
		if got := printableAddr(in); got != want {
			t.Errorf("printableAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
