package ndr

import (
	"errors"
	"strings"
)

// ErrBadXtext is returned by DecodeXtext for a malformed xtext value; an
// SMTP server should answer 501 5.5.4 to the parameter carrying it.
var ErrBadXtext = errors.New("ndr: malformed xtext")

// DecodeXtext decodes the xtext encoding of the ENVID and ORCPT parameters
// (RFC 3461 §4): "+" followed by two upper-case hexadecimal digits stands
// for one octet; other characters must be printable ASCII other than "+"
// and "=".
func DecodeXtext(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
				return "", ErrBadXtext
			}
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", ErrBadXtext
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// EncodeXtext encodes s as xtext (RFC 3461 §4), for writing ENVID and
// ORCPT parameters.
func EncodeXtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isUpperHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
