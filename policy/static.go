package policy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// DefaultKey is the table key of the entry used for domains that match no
// other entry (Postfix has no such key; there the default is the
// smtp_tls_security_level parameter).
const DefaultKey = "*"

// Entry is one entry of a static Table: a key and the requirement it names.
//
// Key is one of
//
//	example.com          the domain example.com exactly
//	.example.com         any subdomain of example.com (not example.com itself)
//	[mx.example.net]     the fixed next hop mx.example.net, any port
//	[mx.example.net]:587 the fixed next hop mx.example.net, port 587
//	*                    every domain no other entry matches (DefaultKey)
//
// Keys are stored lower-case, without a trailing dot; IP addresses in
// brackets are stored in their canonical form ("[2001:db8::1]:25").
type Entry struct {
	// Key selects the destinations the entry applies to; see above.
	Key string
	// Level is the security level required. Zero is None, plaintext, as for
	// Level itself: an Entry built in code must set it.
	Level Level
	// MinVersion is the lowest TLS version allowed (tls.VersionTLS12 or
	// tls.VersionTLS13); zero means the default, TLS 1.2.
	MinVersion uint16
	// Match lists the names a certificate must match at level Secure
	// (Postfix's match=): "example.net" exactly, ".example.net" any
	// subdomain, and the Postfix keywords "nexthop" and "dot-nexthop", which
	// Lookup replaces by the looked-up domain and "." + that domain. Empty
	// means "nexthop", "dot-nexthop". Only valid with Secure.
	Match []string
	// OnFailure is what to do when the requirement is not met (zero: Defer).
	OnFailure FailureAction
	// Mode is Enforce (zero) or Testing.
	Mode Mode
	// Override marks an explicit local override: the only way a static entry
	// may lower a stricter requirement from another member of a Strictest
	// combination. Lookups report it with Source SourceOverride.
	Override bool
	// Line is the line in the table text where the entry starts (zero for
	// entries built in code).
	Line int
}

func (e Entry) clone() Entry {
	e.Match = slices.Clone(e.Match)
	return e
}

// String formats e as one line of the table format (without its Line):
// "[mx.example.net]:587 secure match=example.net:.example.net protocols=>=TLSv1.3".
func (e Entry) String() string {
	var b strings.Builder
	b.WriteString(e.Key)
	b.WriteByte(' ')
	b.WriteString(e.Level.String())
	if len(e.Match) > 0 {
		b.WriteString(" match=")
		b.WriteString(strings.Join(e.Match, ":"))
	}
	switch e.MinVersion {
	case 0:
	case tls.VersionTLS12:
		b.WriteString(" protocols=>=TLSv1.2")
	case tls.VersionTLS13:
		b.WriteString(" protocols=>=TLSv1.3")
	default:
		fmt.Fprintf(&b, " protocols=>=0x%04x", e.MinVersion) // unreachable for valid entries
	}
	if e.OnFailure == Bounce {
		b.WriteString(" on-failure=bounce")
	}
	if e.Mode == Testing {
		b.WriteString(" mode=testing")
	}
	if e.Override {
		b.WriteString(" override=yes")
	}
	return b.String()
}

// ParseError is an error in the text of a static table or in an Entry given
// to NewTable. File is the name given to ParseTable (may be empty); Line is
// 1-based (zero for an entry built in code).
type ParseError struct {
	// File is the name given to ParseTable, LoadTable or NewTable.
	File string
	// Line is the 1-based line of the entry at fault; zero when unknown.
	Line int
	// Msg says what is wrong, in words an administrator can act on.
	Msg string
}

// Error returns "policy: FILE line N: MSG", leaving out what is unknown.
func (e *ParseError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("policy: %s line %d: %s", e.File, e.Line, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("policy: line %d: %s", e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("policy: %s: %s", e.File, e.Msg)
	}
	return "policy: " + e.Msg
}

// Table is a static TLS policy table in the manner of Postfix's
// smtp_tls_policy_maps (postconf(5), TLS_README "TLS policy table"). Build
// one with ParseTable, LoadTable or NewTable; it is immutable afterwards and
// safe for concurrent use. The zero Table has no entries: every lookup
// returns ErrNoPolicy.
type Table struct {
	name    string
	entries []Entry        // in input order
	byKey   map[string]int // normalized key -> index in entries
}

var _ Policy = (*Table)(nil)

// maxParseErrors bounds how many errors ParseTable collects before it stops.
const maxParseErrors = 20

// maxLineLen bounds one physical line of table text.
const maxLineLen = 64 << 10

// ParseTable reads a table in the text format below. name (usually the file
// name) appears in errors and in every Requirement.Reason.
//
// The format follows Postfix's smtp_tls_policy_maps: one entry per line, a key
// then a level then name=value attributes, separated by spaces or tabs:
//
//	# comment (a line whose first non-blank character is #)
//	example.com            encrypt
//	.example.com           verify   on-failure=bounce
//	[mx.example.net]:587   secure   match=example.net:.example.net protocols=>=TLSv1.3
//	legacy.example         may      override=yes
//	*                      may
//
// A line that starts with a space or tab continues the previous entry. As an
// extension, a word starting with # ends the line (a trailing comment).
//
// Levels: none, may, encrypt, dane, dane-only, verify, secure (Postfix's
// fingerprint is rejected as unsupported). Attributes:
//
//   - match=NAME[:NAME...] (or comma-separated): names for level secure only;
//     "nexthop" and "dot-nexthop" as in Postfix; "hostname" is rejected.
//   - protocols=LIST: Postfix syntax, ">=TLSv1.3", "!SSLv2:!SSLv3:!TLSv1",
//     "TLSv1.2:TLSv1.3". Only TLS 1.2 and 1.3 are ever negotiated (RFC 8996,
//     RFC 9325 §3.1.1), so a list that excludes TLS 1.2 gives a minimum of
//     TLS 1.3 and any other list gives TLS 1.2; a list that excludes TLS 1.3
//     is an error (maximum versions are not supported). Not valid with none.
//   - on-failure=defer|bounce (extension): defer and retry (the default), or
//     return the message at once. Not valid with none or may.
//   - mode=enforce|testing (extension): testing reports failures but
//     delivers as may. mode=testing is not valid with none or may.
//   - override=yes|no (extension): see Entry.Override. Not valid on * or
//     with mode=testing.
//
// Keys, level names and attribute names are case-insensitive. Duplicate keys
// (after normalization), duplicate attributes and unknown attributes are
// errors. Every error in the text is a *ParseError naming the line; when
// several lines are wrong, the errors (at most 20) are joined with
// errors.Join. An error from r is returned wrapped, not as a *ParseError.
func ParseTable(r io.Reader, name string) (*Table, error) {
	p := &tableParser{name: name, t: &Table{name: name, byKey: map[string]int{}}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	lineNo := 0
	var cur []token
	flush := func() {
		if len(cur) > 0 {
			p.entry(cur)
			cur = nil
		}
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		cont := line[0] == ' ' || line[0] == '\t'
		if !cont {
			flush()
		} else if len(cur) == 0 {
			p.errorf(lineNo, "continuation line (starting with a space or tab) without an entry before it")
			continue
		}
		for _, w := range strings.Fields(line) {
			if w[0] == '#' {
				break
			}
			cur = append(cur, token{w, lineNo})
		}
		if len(p.errs) >= maxParseErrors {
			break
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			p.errorf(lineNo+1, "line longer than %d bytes", maxLineLen)
		} else {
			return nil, fmt.Errorf("policy: reading %s: %w", name, err)
		}
	}
	if len(p.errs) == 1 {
		return nil, p.errs[0]
	}
	if len(p.errs) > 1 {
		return nil, errors.Join(p.errs...)
	}
	return p.t, nil
}

// LoadTable reads the table file at path with ParseTable.
func LoadTable(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	return ParseTable(f, path)
}

// NewTable builds a table from entries built in code, validating and
// normalizing them as ParseTable does. name appears in errors and reasons.
// Errors are *ParseError values (joined when several), with Line taken from
// the entry.
func NewTable(name string, entries []Entry) (*Table, error) {
	p := &tableParser{name: name, t: &Table{name: name, byKey: map[string]int{}}}
	for _, e := range entries {
		e = e.clone()
		key, msg := normalizeKey(e.Key)
		if msg != "" {
			p.errorf(e.Line, "%s", msg)
			continue
		}
		e.Key = key
		if e.Level < None || e.Level > Secure {
			p.errorf(e.Line, "entry %q: invalid level %d", e.Key, int(e.Level))
			continue
		}
		badMatch := false
		var match []string
		for _, m := range e.Match {
			nm, msg := normalizeMatch(m)
			if msg != "" {
				p.errorf(e.Line, "entry %q: %s", e.Key, msg)
				badMatch = true
				break
			}
			if !slices.Contains(match, nm) {
				match = append(match, nm)
			}
		}
		if badMatch {
			continue
		}
		e.Match = match
		if e.MinVersion != 0 && e.MinVersion != tls.VersionTLS12 && e.MinVersion != tls.VersionTLS13 {
			p.errorf(e.Line, "entry %q: MinVersion must be 0, TLS 1.2 or TLS 1.3", e.Key)
			continue
		}
		if e.OnFailure != Defer && e.OnFailure != Bounce || e.Mode != Enforce && e.Mode != Testing {
			p.errorf(e.Line, "entry %q: invalid OnFailure or Mode", e.Key)
			continue
		}
		p.add(e, attrSet{match: len(e.Match) > 0, protocols: e.MinVersion != 0,
			onFailure: e.OnFailure != Defer, mode: e.Mode != Enforce, override: e.Override})
	}
	if len(p.errs) == 1 {
		return nil, p.errs[0]
	}
	if len(p.errs) > 1 {
		return nil, errors.Join(p.errs...)
	}
	return p.t, nil
}

// Name returns the name the table was built with.
func (t *Table) Name() string { return t.name }

// Entries returns a copy of the table's entries in input order.
func (t *Table) Entries() []Entry {
	out := make([]Entry, len(t.entries))
	for i, e := range t.entries {
		out[i] = e.clone()
	}
	return out
}

// String formats the table in the text format ParseTable reads, one entry per
// line in input order, attributes in a fixed order; parsing the result gives
// the same entries (apart from Line).
func (t *Table) String() string {
	var b strings.Builder
	for _, e := range t.entries {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Lookup returns the requirement for domain: the entry whose key is the domain
// itself, else the entry for the nearest parent (".b.example.com", then
// ".example.com", then ".com" for a.b.example.com), else the * entry. Case and
// a trailing dot are ignored. If domain is a next hop written as Postfix
// writes it, "[host]" or "[host]:port", Lookup is LookupNextHop (the * entry
// does not apply).
//
// When no entry applies the error wraps ErrNoPolicy. Reason names the table,
// the line and the key that matched. ctx is only checked for cancellation.
func (t *Table) Lookup(ctx context.Context, domain string) (Requirement, error) {
	if err := ctx.Err(); err != nil {
		return Requirement{}, err
	}
	if strings.HasPrefix(domain, "[") {
		host, port, err := splitNextHop(domain)
		if err != nil {
			return Requirement{}, err
		}
		return t.LookupNextHop(ctx, host, port)
	}
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if d == "" || d[0] == '.' {
		return Requirement{}, fmt.Errorf("policy: invalid domain %q", domain)
	}
	if e := t.entry(d); e != nil {
		return t.requirement(e, d), nil
	}
	for rest := d; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		if e := t.entry("." + rest); e != nil {
			return t.requirement(e, d), nil
		}
	}
	if e := t.entry(DefaultKey); e != nil {
		return t.requirement(e, d), nil
	}
	return Requirement{}, fmt.Errorf("%w: table %s has no entry for %q", ErrNoPolicy, t.name, d)
}

// LookupLocal is Lookup: a table is local configuration. It implements
// LocalPolicy.
func (t *Table) LookupLocal(ctx context.Context, domain string) (Requirement, error) {
	return t.Lookup(ctx, domain)
}

// LookupNextHop returns the requirement for a fixed next hop (a route's
// smarthost): the entry "[host]:port", else "[host]". Port 0 means 25. host
// may be a name or an IP address, with or without brackets. The returned
// Requirement's Domain is host; "nexthop" in match= stands for host.
//
// When neither key exists the error wraps ErrNoPolicy.
//
// The entry for a next hop is not the whole requirement of mail sent to
// it: a transport.Connector holds mail routed to a fixed next hop to the
// strictest of this entry, the recipient domain's entry (Lookup, with its
// parents and the * entry) and the route's own level, so that routing a
// domain to a gateway never weakens the domain's entry (ForNextHop).
func (t *Table) LookupNextHop(ctx context.Context, host string, port int) (Requirement, error) {
	if err := ctx.Err(); err != nil {
		return Requirement{}, err
	}
	h, msg := normalizeHost(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if msg != "" {
		return Requirement{}, fmt.Errorf("policy: invalid next hop %q: %s", host, msg)
	}
	if port == 0 {
		port = 25
	}
	if port < 0 || port > 65535 {
		return Requirement{}, fmt.Errorf("policy: invalid port %d", port)
	}
	if e := t.entry("[" + h + "]:" + strconv.Itoa(port)); e != nil {
		return t.requirement(e, h), nil
	}
	if e := t.entry("[" + h + "]"); e != nil {
		return t.requirement(e, h), nil
	}
	return Requirement{}, fmt.Errorf("%w: table %s has no entry for next hop [%s]:%d", ErrNoPolicy, t.name, h, port)
}

func (t *Table) entry(key string) *Entry {
	if i, ok := t.byKey[key]; ok {
		return &t.entries[i]
	}
	return nil
}

func (t *Table) requirement(e *Entry, domain string) Requirement {
	r := Requirement{
		Domain:     domain,
		Level:      e.Level,
		MinVersion: e.MinVersion,
		Mode:       e.Mode,
		OnFailure:  e.OnFailure,
		Source:     SourceStatic,
	}
	switch {
	case e.Override:
		r.Source = SourceOverride
	case e.Key == DefaultKey:
		r.Source = SourceDefault
	}
	for _, m := range e.Match {
		switch m {
		case "nexthop":
			m = domain
		case "dot-nexthop":
			m = "." + domain
		}
		if !slices.Contains(r.Match, m) {
			r.Match = append(r.Match, m)
		}
	}
	where := t.name
	if where == "" {
		where = "table"
	}
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
	}
	r.Reason = fmt.Sprintf("%s entry %s", where, e.Key)
	if e.Override {
		r.Reason += " (override)"
	}
	return r
}
