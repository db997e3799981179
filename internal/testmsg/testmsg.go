// Package testmsg makes test and load messages of a given size.
package testmsg

import "strings"

// Body returns a message of exactly size octets (at least a header and a
// blank line): a Subject header and 78-octet lines, every line ended by
// CRLF, no bare CR or LF, as RFC 5322 §2.1.1 and RFC 5321 §2.3.8 want.
func Body(subject string, size int) string {
	line := strings.Repeat("abcdefghij", 7) + "012345\r\n" // 78 octets
	var b strings.Builder
	b.WriteString("Subject: " + subject + "\r\n\r\n")
	for b.Len() < size {
		b.WriteString(line)
	}
	s := b.String()[:size-2]
	if strings.HasSuffix(s, "\r") { // the cut split a CRLF: no bare CR
		s = s[:len(s)-1] + "x"
	}
	return s + "\r\n"
}
