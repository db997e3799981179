package transport

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/ndr"
)

// The Server's command syntax (RFC 5321 §4.1): pure functions from the text
// of a command line to its parts, with no state and no I/O.

// parseCommand splits a command line (its CRLF or LF already removed) into
// the verb, upper-cased, and the argument after the first space, trimmed
// (RFC 5321 §4.1.1: a verb is a sequence of letters, followed by a space
// and its parameters or by the end of the line). ok is false for a line
// that has no such verb: empty, starting with a space, or holding anything
// but ASCII letters before its first space.
func parseCommand(line string) (verb, arg string, ok bool) {
	v, a, _ := strings.Cut(line, " ")
	if v == "" || len(v) > 16 {
		return "", "", false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i] | 0x20; c < 'a' || c > 'z' {
			return "", "", false
		}
	}
	return strings.ToUpper(v), strings.TrimSpace(a), true
}

// cutPrefixFold is strings.CutPrefix ignoring ASCII case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// parseReversePath parses the argument of MAIL after "FROM:" (RFC 5321
// §4.1.2 Reverse-path): "<>" is the null path (""). It returns the address
// and the rest of s, the parameters.
func parseReversePath(s string) (addr, rest string, err error) {
	s = strings.TrimLeft(s, " ")
	if rest, ok := strings.CutPrefix(s, "<>"); ok {
		return "", rest, nil
	}
	return parsePath(s)
}

// parseForwardPath parses the argument of RCPT after "TO:" (RFC 5321
// §4.1.2 Forward-path). The reserved "<Postmaster>" without a domain
// (§4.1.1.3, any case) is returned as "postmaster@" + hostname: §4.5.1 says
// a server MUST accept it and that it names this host's postmaster.
func parseForwardPath(s, hostname string) (addr, rest string, err error) {
	s = strings.TrimLeft(s, " ")
	if rest, ok := cutPrefixFold(s, "<postmaster>"); ok {
		return "postmaster@" + hostname, rest, nil
	}
	return parsePath(s)
}

var (
	errPathSyntax   = errors.New("malformed path")
	errMailboxEmpty = errors.New("empty local part or domain")
)

// parsePath parses "<" [ A-d-l ":" ] Mailbox ">" (RFC 5321 §4.1.2); the
// source route is ignored (§4.1.1.3 says a server SHOULD). Angle brackets
// are required. The local part may be a quoted string, whose quoting is
// removed; what the mailbox may contain is checked afterwards
// (badAddressText), so that a control character is refused as such.
func parsePath(s string) (addr, rest string, err error) {
	s, ok := strings.CutPrefix(s, "<")
	if !ok {
		return "", "", errPathSyntax
	}
	if strings.HasPrefix(s, "@") {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return "", "", errPathSyntax
		}
		s = s[i+1:]
	}
	addr, s, err = parseMailbox(s)
	if err != nil {
		return "", "", err
	}
	s, ok = strings.CutPrefix(s, ">")
	if !ok {
		return "", "", errPathSyntax
	}
	return addr, s, nil
}

// parseMailbox parses Local-part "@" Domain at the start of s and returns
// the mailbox and the rest, which starts at the first space, tab or ">"
// after the "@". The domain is taken as sent, but for an "@" in it.
func parseMailbox(s string) (addr, rest string, err error) {
	var b strings.Builder
	if q, ok := strings.CutPrefix(s, `"`); ok { // Quoted-string
		s = q
		for {
			if s == "" {
				return "", "", errPathSyntax
			}
			c := s[0]
			s = s[1:]
			if c == '"' {
				break
			}
			if c == '\\' {
				if s == "" {
					return "", "", errPathSyntax
				}
				c, s = s[0], s[1:]
			}
			b.WriteByte(c)
		}
	} else { // Dot-string
		i := strings.IndexAny(s, "@()<>[]:;\\,\" \t")
		if i < 0 || s[i] != '@' {
			return "", "", errPathSyntax
		}
		b.WriteString(s[:i])
		s = s[i:]
	}
	if b.Len() == 0 {
		return "", "", errMailboxEmpty
	}
	s, ok := strings.CutPrefix(s, "@")
	if !ok {
		return "", "", errPathSyntax
	}
	end := strings.IndexAny(s, " \t>")
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return "", "", errMailboxEmpty
	}
	if strings.IndexByte(s[:end], '@') >= 0 {
		return "", "", errPathSyntax // RFC 5321 §4.1.2: no "@" in a Domain
	}
	b.WriteByte('@')
	b.WriteString(s[:end])
	return b.String(), s[end:], nil
}

// esmtpParam is one "keyword[=value]" of MAIL or RCPT (RFC 5321 §4.1.2
// esmtp-param), the keyword upper-cased.
type esmtpParam struct{ key, value string }

// parseParams splits the parameters of MAIL or RCPT, in order. A parameter
// with more than one "=" is a syntax error.
func parseParams(s string) ([]esmtpParam, error) {
	var out []esmtpParam
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		if k == "" || strings.Contains(v, "=") {
			return nil, errors.New("malformed parameter")
		}
		out = append(out, esmtpParam{strings.ToUpper(k), v})
	}
	return out, nil
}

// decodeXtext decodes RFC 3461 §4 xtext: "+" and two upper-case hex
// digits stand for one octet.
func decodeXtext(s string) (string, error) {
	if !strings.Contains(s, "+") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
			return "", errors.New("malformed xtext")
		}
		n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// decodeUTF8AddrXtext decodes RFC 6533 §3 utf-8-addr-xtext and
// utf-8-addr-unitext: "\x{HEX}" stands for one code point, which must need
// the escape (an xtext special, or non-ASCII); raw controls, space, "\",
// "+" and "=" are refused. Raw non-ASCII is kept as it is.
func decodeUTF8AddrXtext(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			rest, ok := strings.CutPrefix(s[i:], `\x{`)
			end := strings.IndexByte(rest, '}')
			if !ok || end < 2 || end > 6 {
				return "", errors.New("malformed escape")
			}
			hex := rest[:end]
			for j := 0; j < len(hex); j++ {
				if !isUpperHex(hex[j]) {
					return "", errors.New("malformed escape")
				}
			}
			n, _ := strconv.ParseUint(hex, 16, 32)
			if !escapeAllowed(rune(n), len(hex)) {
				return "", errors.New("escape not allowed: " + hex)
			}
			b.WriteRune(rune(n))
			i += len(`\x{`) + end + 1
		case c < 0x20 || c == 0x7f || c == ' ' || c == '+' || c == '=':
			return "", errors.New("character not allowed")
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// escapeAllowed reports whether RFC 6533 §3 allows "\x{hex}" with n
// digits for r: two digits for an xtext special or "\" or U+0080–U+00FF,
// then the shortest form, no surrogates.
func escapeAllowed(r rune, n int) bool {
	switch n {
	case 2:
		return r >= 0x01 && r <= 0x20 || r == '+' || r == '=' || r == 0x7f || r == '\\' || r >= 0x80 && r <= 0xff
	case 3:
		return r >= 0x100 && r <= 0xfff
	case 4:
		return r >= 0x1000 && r <= 0xffff && !(r >= 0xd800 && r <= 0xdfff)
	case 5:
		return r >= 0x10000 && r <= 0xfffff
	case 6:
		return r >= 0x100000 && r <= 0x10ffff
	}
	return false
}

// parseORCPT decodes an ORCPT value, "addr-type;xtext" (RFC 3461 §4.2),
// for the types rfc822 (xtext of printable ASCII) and utf-8 (RFC 6533 §3).
// It returns "type;address" with the type in lower case.
func parseORCPT(v string) (string, error) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || typ == "" || addr == "" {
		return "", errors.New("malformed ORCPT")
	}
	var err error
	switch strings.ToLower(typ) {
	case "rfc822":
		addr, err = decodeXtext(addr)
		if err == nil && !isPrintableASCII(addr) {
			err = errors.New("ORCPT rfc822 address not printable ASCII")
		}
	case "utf-8":
		addr, err = decodeUTF8AddrXtext(addr)
	default:
		err = errors.New("unknown ORCPT address type")
	}
	if err != nil || addr == "" {
		return "", errors.New("malformed ORCPT")
	}
	return strings.ToLower(typ) + ";" + addr, nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// parseHelo returns the domain or address literal of EHLO or HELO: the
// argument up to its first space.
func parseHelo(arg string) (string, bool) {
	d, _, _ := strings.Cut(arg, " ")
	return d, d != ""
}

// parseBDAT parses the arguments of BDAT (RFC 3030 §2): a chunk size of
// at most 32 bits, and LAST.
func parseBDAT(arg string) (size int64, last bool, reply *Error) {
	args := strings.Fields(arg)
	switch {
	case len(args) == 0:
		return 0, false, syntaxReply("Missing chunk size argument")
	case len(args) > 2:
		return 0, false, syntaxReply("Too many arguments")
	case len(args) == 2 && !strings.EqualFold(args[1], "LAST"):
		return 0, false, syntaxReply("Unknown BDAT argument")
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return 0, false, syntaxReply("Malformed size argument")
	}
	return int64(n), len(args) == 2, nil
}

// syntaxReply is "501 5.5.4" (RFC 5321 §4.2.3, RFC 3463 X.5.4: invalid
// command arguments).
func syntaxReply(msg string) *Error {
	return &Error{Code: 501, EnhancedCode: EnhancedCode{5, 5, 4}, Message: msg}
}

// badAddressText reports whether an address (a reverse-path, forward-path
// or decoded ORCPT value) holds what no mailbox may: invalid UTF-8, a C0
// control (NUL, tab, CR, LF...), DEL, or a C1 control (U+0080 to U+009F).
// RFC 5321 §4.1.2 allows none of them in a Mailbox (atext, qtextSMTP and
// quoted-pairSMTP are printable ASCII); RFC 6531 §3.3 extends them only
// with UTF-8 non-ASCII, which excludes the C1 controls (RFC 6532 §3.1,
// RFC 5198 §2). Refusing them keeps NUL, escapes and the like out of
// Return-Path, Delivered-To, Maildir names and DSNs.
func badAddressText(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || r <= 0x9f {
			return true // invalid UTF-8, or a C1 control
		}
		i += n
	}
	return false
}

// parseNotify parses a NOTIFY value (RFC 3461 §4.1): ndr.ParseNotify's
// grammar, where the parameter, when given, is not empty.
func parseNotify(v string) (ndr.Notify, error) {
	n, err := ndr.ParseNotify(v)
	if err == nil && n == 0 {
		err = ndr.ErrBadNotify
	}
	return n, err
}
