package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/txtrecord"
	"github.com/mailtls/mailtls/policy"
)

// Parse errors. Every error returned by ParseRecord wraps ErrRecordSyntax and
// every error returned by ParsePolicy wraps ErrPolicySyntax.
var (
	// ErrRecordSyntax: the TXT record is not a valid MTA-STS record
	// (RFC 8461 §3.1). Treat the domain as publishing no record; a valid
	// cached policy still applies.
	ErrRecordSyntax = errors.New("mtasts: invalid TXT record")
	// ErrPolicySyntax: the policy body is not a valid policy (RFC 8461
	// §3.2). Report it to TLS-RPT as "sts-policy-invalid"; a valid cached
	// policy still applies.
	ErrPolicySyntax = errors.New("mtasts: invalid policy")
)

// MaxMaxAge is the largest max_age a policy may carry, in seconds
// (RFC 8461 §3.2: "maximum value of 31557600", one year).
const MaxMaxAge = 31557600

// Mode is a policy mode (RFC 8461 §5).
type Mode string

// Policy modes (RFC 8461 §3.2, §5).
const (
	// ModeEnforce: deliver only to matching MX hosts over TLS with a
	// PKIX-valid certificate; otherwise do not deliver.
	ModeEnforce Mode = "enforce"
	// ModeTesting: deliver as usual, report failures (RFC 8460).
	ModeTesting Mode = "testing"
	// ModeNone: the domain has no active policy (used to withdraw one,
	// RFC 8461 §8.3).
	ModeNone Mode = "none"
)

// Extension is an unknown key/value pair found in a record or policy. RFC 8461
// §3.1 and §3.2 require unknown fields to be accepted and ignored; they are
// kept for logging.
type Extension struct {
	Key   string
	Value string
}

// Record is a parsed "_mta-sts" TXT record (RFC 8461 §3.1), e.g.
// "v=STSv1; id=20160831085700Z;".
type Record struct {
	// ID identifies the current policy: when it changes, the policy must be
	// fetched again. 1 to 32 letters and digits.
	ID string
	// Extensions holds unknown fields, in order.
	Extensions []Extension
}

// String returns the record in its canonical TXT form.
func (r Record) String() string {
	var b strings.Builder
	b.WriteString("v=STSv1; id=" + r.ID)
	for _, e := range r.Extensions {
		b.WriteString("; " + e.Key + "=" + e.Value)
	}
	b.WriteString(";")
	return b.String()
}

// recordFormat is the "_mta-sts" TXT record format (RFC 8461 §3.1) and this
// package's errors for it.
func recordFormat() txtrecord.Format {
	return txtrecord.Format{
		Version:            "v=STSv1",
		ErrSyntax:          ErrRecordSyntax,
		ErrNoRecord:        ErrNoRecord,
		ErrMultipleRecords: ErrMultipleRecords,
		ErrDNS:             ErrDNS,
	}
}

// isSTSRecord reports whether txt is a candidate MTA-STS record: RFC 8461 §3.1
// discards TXT records that do not begin with "v=STSv1;". A record beginning
// "v=STSv1 ;" (allowed by the ABNF's *WSP) is treated as a candidate too, so
// that it is parsed rather than silently ignored.
func isSTSRecord(txt string) bool { return recordFormat().IsCandidate(txt) }

// ParseRecord parses an MTA-STS TXT record strictly, per the ABNF of RFC 8461
// §3.1:
//
//	sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//	sts-field-delim = *WSP ";" *WSP
//	sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//
// The id field is required; unknown fields are kept as Extensions. When a
// field appears more than once, the first occurrence is used (§3.2's rule,
// applied to the record as well); later ones must still be valid. A DNS TXT
// record made of several strings must be joined (without separators) before
// it is passed in; net.Resolver does so.
func ParseRecord(txt string) (*Record, error) {
	fail := func(format string, args ...any) (*Record, error) {
		return nil, fmt.Errorf("%w: %s", ErrRecordSyntax, fmt.Sprintf(format, args...))
	}
	var r Record
	seenID := false
	for f, err := range recordFormat().Fields(txt) {
		if err != nil {
			return nil, err
		}
		if f.Name == "id" {
			if !isID(f.Value) {
				return fail("invalid id %q (want 1 to 32 letters and digits)", f.Value)
			}
			if !seenID {
				r.ID, seenID = f.Value, true
			}
			continue
		}
		// sts-extension
		if !txtrecord.IsExtValue(f.Value) {
			return fail("invalid value for %q", f.Name)
		}
		r.Extensions = append(r.Extensions, Extension{Key: f.Name, Value: f.Value})
	}
	if !seenID {
		return fail("missing id")
	}
	return &r, nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isID: 1*32(ALPHA / DIGIT) (RFC 8461 §3.1).
func isID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// Policy is a parsed MTA-STS policy (RFC 8461 §3.2).
type Policy struct {
	// Mode is enforce, testing or none.
	Mode Mode
	// MaxAge is the policy's lifetime in seconds, 0 to MaxMaxAge.
	MaxAge int
	// MX lists the permitted MX host patterns, lower-cased, in order: a host
	// name, or "*." followed by a domain to match exactly one extra label
	// (§4.1). Empty only when Mode is none.
	MX []string
	// Extensions holds unknown fields, in order.
	Extensions []Extension
}

// String returns the policy in canonical form, LF-terminated lines.
func (p *Policy) String() string {
	var b strings.Builder
	b.WriteString("version: STSv1\n")
	b.WriteString("mode: " + string(p.Mode) + "\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\n")
	}
	b.WriteString("max_age: " + strconv.Itoa(p.MaxAge) + "\n")
	for _, e := range p.Extensions {
		b.WriteString(e.Key + ": " + e.Value + "\n")
	}
	return b.String()
}

// Matches reports whether host matches one of the policy's MX patterns
// (RFC 8461 §4.1); see policy.MatchMX.
func (p *Policy) Matches(host string) bool {
	for _, pat := range p.MX {
		if policy.MatchMX(pat, host) {
			return true
		}
	}
	return false
}

// ParsePolicy parses a policy body strictly, per the ABNF of RFC 8461 §3.2.
// Lines end in LF or CRLF (the last terminator is optional) and have the form
// "key:" *WSP value *WSP. version (STSv1), mode and max_age are required,
// and at least one mx unless the mode is none. Keys are case-sensitive.
// Unknown keys are accepted (if well-formed) and kept as Extensions. When a
// field other than mx appears more than once, the first occurrence is used;
// later ones must still be valid. max_age above MaxMaxAge, empty lines, a
// byte-order mark, U-labels in mx patterns and invalid UTF-8 are errors.
func ParsePolicy(text string) (*Policy, error) {
	fail := func(line int, format string, args ...any) (*Policy, error) {
		msg := fmt.Sprintf(format, args...)
		if line > 0 {
			msg = fmt.Sprintf("line %d: %s", line, msg)
		}
		return nil, fmt.Errorf("%w: %s", ErrPolicySyntax, msg)
	}
	if text == "" {
		return fail(0, "empty policy")
	}
	if !utf8.ValidString(text) {
		return fail(0, "not valid UTF-8")
	}
	lines := strings.Split(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // [sts-policy-term] after the last field
	}
	var p Policy
	seen := map[string]bool{}
	for i, line := range lines {
		n := i + 1
		line = strings.TrimSuffix(line, "\r") // CRLF
		if strings.ContainsRune(line, '\r') {
			return fail(n, "bare CR")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return fail(n, "no ':' in %q", line)
		}
		if !txtrecord.IsExtName(name) { // sts-policy-ext-name, the record's sts-ext-name
			return fail(n, "invalid key %q", name)
		}
		value = strings.Trim(value, " \t") // sts-policy-field-delim *WSP, trailing *WSP
		first := !seen[name]
		seen[name] = true
		switch name {
		case "version":
			if value != "STSv1" {
				return fail(n, "version %q, want STSv1", value)
			}
		case "mode":
			m := Mode(value)
			if m != ModeEnforce && m != ModeTesting && m != ModeNone {
				return fail(n, "mode %q, want enforce, testing or none", value)
			}
			if first {
				p.Mode = m
			}
		case "max_age":
			// 1*10(DIGIT), at most 31557600.
			if len(value) == 0 || len(value) > 10 || strings.TrimLeft(value, "0123456789") != "" {
				return fail(n, "max_age %q is not 1 to 10 digits", value)
			}
			v, err := strconv.ParseUint(value, 10, 64)
			if err != nil || v > MaxMaxAge {
				return fail(n, "max_age %s exceeds %d", value, MaxMaxAge)
			}
			if first {
				p.MaxAge = int(v)
			}
		case "mx":
			if !isMXPattern(value) {
				return fail(n, "invalid mx pattern %q", value)
			}
			p.MX = append(p.MX, strings.ToLower(value))
		default:
			if !isPolicyExtValue(value) {
				return fail(n, "invalid value for %q", name)
			}
			p.Extensions = append(p.Extensions, Extension{Key: name, Value: value})
		}
	}
	for _, req := range []string{"version", "mode", "max_age"} {
		if !seen[req] {
			return fail(0, "missing %s", req)
		}
	}
	if len(p.MX) == 0 && p.Mode != ModeNone {
		return fail(0, "mode %s requires at least one mx", p.Mode)
	}
	return &p, nil
}

// isMXPattern: ["*."] Domain, Domain per RFC 5321 §4.1.2 (LDH labels), the
// last label starting with a letter (sts-policy-mx-toplabel), so that an IP
// address is not a pattern.
func isMXPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if !isDomain(s) {
		return false
	}
	top := s[strings.LastIndexByte(s, '.')+1:]
	return top[0] >= 'a' && top[0] <= 'z' || top[0] >= 'A' && top[0] <= 'Z'
}

// isDomain reports whether s is an ASCII host name: dot-separated labels of
// letters, digits and hyphens, each 1 to 63 octets, not starting or ending
// with a hyphen, 253 octets at most (RFC 5321 §4.1.2, RFC 1035 §2.3.4).
func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// isPolicyExtValue: sts-policy-vchar [*(%x20 / sts-policy-vchar)
// sts-policy-vchar], sts-policy-vchar = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4
// (RFC 8461 §3.2). The caller has trimmed surrounding WSP and checked UTF-8.
func isPolicyExtValue(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		// Space is allowed inside; controls (including TAB) and DEL are not.
		// Any multi-octet UTF-8 sequence is allowed.
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
