// Package txtrecord reads the "v=<version>; key=value; ..." DNS TXT records
// of MTA-STS (RFC 8461 §3.1, "_mta-sts") and TLS-RPT (RFC 8460 §3,
// "_smtp._tls"): the field-list grammar the two RFCs share, and the
// selection of the one record a domain publishes among its TXT records.
//
// The shared grammar, with the RFCs' own names in parentheses:
//
//	record    = version 1*(delim field) [delim]     ; sts-text-record, tlsrpt-record
//	delim     = *WSP ";" *WSP                      ; sts-field-delim, field-delim
//	field     = name "=" value
//	ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//	ext-value = 1*(%x21-3A / %x3C / %x3E-7E)       ; no SP, CTL, ";" or "="
//
// A value runs to the next WSP or ";" (a "," in it is an ordinary octet).
// A list field (RFC 8460's rua) is instead value *(*WSP "," *WSP value),
// each value running to the next WSP, ";" or "," (RFC 8460 requires ","
// ";" and "!" inside a tlsrpt-uri to be percent-encoded). Field names and the version are case-sensitive (%s"...").
//
// What the fields mean is the calling package's business: this package
// checks the structure and the names, and yields the values unchecked, so
// that each caller applies its own value syntax (RFC 8461's id is
// 1*32(ALPHA / DIGIT), RFC 8460's rua a URI, both RFCs' extensions
// ext-value, see IsExtValue) and its own rule for repeated fields.
//
// Not implemented here: joining the strings of a multi-string TXT record
// (net.Resolver does it), and anything about the record's meaning.
package txtrecord

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"slices"
	"strings"
)

// Format describes one record format and the errors its package reports.
// The error fields used by the methods called must be set; every error a
// Format's methods return is or wraps one of them (or is the context's error), so that callers match their own
// package's sentinels with errors.Is. A Format must not be modified while
// in use.
type Format struct {
	// Version is the record's leading version token, e.g. "v=STSv1"
	// (RFC 8461 §3.1 sts-version) or "v=TLSRPTv1" (RFC 8460 §3
	// tlsrpt-version), matched case-sensitively.
	Version string
	// ListFields names the fields whose value is a comma-separated list,
	// e.g. "rua" (RFC 8460 §3 tlsrpt-rua). Nil means none.
	ListFields []string

	// ErrSyntax is wrapped by every error Fields yields.
	ErrSyntax error
	// ErrNoRecord is returned by Select and Lookup when no candidate record
	// exists.
	ErrNoRecord error
	// ErrMultipleRecords is returned by Select and Lookup when more than one
	// candidate record exists.
	ErrMultipleRecords error
	// ErrDNS is wrapped by Lookup's errors for failed (not "not found")
	// lookups.
	ErrDNS error
}

// Field is one name=value field of a record, in the order written. A list
// field yields one Field per list element, all with the same Name.
type Field struct {
	Name  string
	Value string
}

// IsCandidate reports whether txt is one of the records RFC 8461 §3.1 and
// RFC 8460 §3 keep when choosing among a domain's TXT records: those that
// begin with the version followed by ";". A record beginning with the
// version, white space and ";" (allowed by the delimiter's *WSP) counts
// too, so that it is parsed rather than silently ignored.
func (f Format) IsCandidate(txt string) bool {
	rest, ok := strings.CutPrefix(txt, f.Version)
	return ok && strings.HasPrefix(trimWSP(rest), ";")
}

// Fields reads a record's fields in order, per the grammar in the package
// documentation (RFC 8461 §3.1, RFC 8460 §3). It checks the version, the
// delimiters, that there is at least one field, and that every field name
// is an ext-name; values are yielded unchecked (list elements split, each
// possibly empty), so that the caller checks each value in turn and the
// first error in the record, structural or not, is the one reported. On a
// syntax error it yields a zero Field and an error wrapping f.ErrSyntax, and
// stops.
func (f Format) Fields(txt string) iter.Seq2[Field, error] {
	return func(yield func(Field, error) bool) {
		fail := func(format string, args ...any) {
			yield(Field{}, fmt.Errorf("%w: %s", f.ErrSyntax, fmt.Sprintf(format, args...)))
		}
		rest, ok := strings.CutPrefix(txt, f.Version)
		if !ok {
			fail("does not start with %s", f.Version)
			return
		}
		n := 0
		for {
			// delim
			rest = trimWSP(rest)
			if rest == "" {
				break
			}
			if rest[0] != ';' {
				fail("expected ';' at %q", rest)
				return
			}
			rest = trimWSP(rest[1:])
			if rest == "" {
				break // optional trailing delimiter
			}
			// name "=": a valid name contains no WSP or ';', so it
			// ends before the first of them.
			end := tokenEnd(rest, " \t;")
			name, _, ok := strings.Cut(rest[:end], "=")
			if !ok {
				fail("field %q has no '='", rest[:end])
				return
			}
			if !IsExtName(name) {
				fail("invalid field name %q", name)
				return
			}
			rest = rest[len(name)+1:]
			n++
			if !slices.Contains(f.ListFields, name) {
				end = tokenEnd(rest, " \t;")
				if !yield(Field{Name: name, Value: rest[:end]}, nil) {
					return
				}
				rest = rest[end:]
				continue
			}
			// value *(*WSP "," *WSP value)
			for {
				end = tokenEnd(rest, " \t;,")
				if !yield(Field{Name: name, Value: rest[:end]}, nil) {
					return
				}
				rest = rest[end:]
				t := trimWSP(rest)
				if !strings.HasPrefix(t, ",") {
					break
				}
				rest = trimWSP(t[1:])
			}
		}
		if n == 0 {
			fail("no fields after version")
		}
	}
}

// Select returns the one candidate record (IsCandidate) among a domain's
// TXT records: RFC 8461 §3.1 and RFC 8460 §3 discard the others, and treat
// a domain with none, or more than one, as not publishing a record. The
// error is f.ErrNoRecord or f.ErrMultipleRecords.
func (f Format) Select(txts []string) (string, error) {
	var found []string
	for _, t := range txts {
		if f.IsCandidate(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", f.ErrNoRecord
	case 1:
		return found[0], nil
	default:
		return "", f.ErrMultipleRecords
	}
}

// Resolver is the DNS seam: *net.Resolver and go-mockdns's Resolver
// satisfy it. A not-found result must be a *net.DNSError with IsNotFound
// set (or an empty list).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Lookup looks up the TXT records at name through r (nil means
// net.DefaultResolver) and returns the one candidate record (Select). Not
// found (NXDOMAIN or no TXT records) is f.ErrNoRecord; when ctx is done the
// error is ctx.Err(); any other failure wraps f.ErrDNS.
func (f Format) Lookup(ctx context.Context, r Resolver, name string) (string, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	txts, err := r.LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return "", f.ErrNoRecord
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%w: %v", f.ErrDNS, err)
	}
	return f.Select(txts)
}

// IsExtName reports whether s is an ext-name:
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."), the field-name
// syntax of RFC 8461 §3.1 (sts-ext-name) and §3.2 (sts-policy-ext-name) and
// of RFC 8460 §3 (tlsrpt-ext-name).
func IsExtName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// IsExtValue reports whether s is an ext-value: 1*(%x21-3A / %x3C /
// %x3E-7E), printable ASCII except ";" and "=", the extension-value syntax
// of RFC 8461 §3.1 (sts-ext-value) and RFC 8460 §3 (tlsrpt-ext-value).
func IsExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// trimWSP removes leading WSP (SP / HTAB, RFC 5234 Appendix B.1).
func trimWSP(s string) string { return strings.TrimLeft(s, " \t") }

// tokenEnd returns the index of the first byte of s in stop, or len(s).
func tokenEnd(s, stop string) int {
	if i := strings.IndexAny(s, stop); i >= 0 {
		return i
	}
	return len(s)
}
