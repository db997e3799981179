package policy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
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
	// Level is the security level required.
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

// LookupNextHop returns the requirement for a fixed next hop (a route's
// smarthost): the entry "[host]:port", else "[host]". Port 0 means 25. host
// may be a name or an IP address, with or without brackets. The returned
// Requirement's Domain is host; "nexthop" in match= stands for host.
//
// When neither key exists the error wraps ErrNoPolicy: the caller should
// then look up the recipient domain with Lookup, as Postfix does when the
// next hop has no policy.
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

// splitNextHop splits "[host]" or "[host]:port".
func splitNextHop(s string) (host string, port int, err error) {
	end := strings.IndexByte(s, ']')
	if !strings.HasPrefix(s, "[") || end < 0 {
		return "", 0, fmt.Errorf("policy: invalid next hop %q", s)
	}
	host, rest := s[1:end], s[end+1:]
	if rest == "" {
		return host, 0, nil
	}
	ps, ok := strings.CutPrefix(rest, ":")
	n, perr := strconv.Atoi(ps)
	if !ok || perr != nil || n < 1 || n > 65535 || ps[0] == '+' {
		return "", 0, fmt.Errorf("policy: invalid port in next hop %q", s)
	}
	return host, n, nil
}

type token struct {
	s    string
	line int
}

type attrSet struct {
	match, protocols, onFailure, mode, override bool
}

type tableParser struct {
	name string
	t    *Table
	errs []error
}

func (p *tableParser) errorf(line int, format string, args ...any) {
	if len(p.errs) < maxParseErrors {
		p.errs = append(p.errs, &ParseError{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

// entry parses one logical entry (a line and its continuation lines).
func (p *tableParser) entry(toks []token) {
	keyTok := toks[0]
	key, msg := normalizeKey(keyTok.s)
	if msg != "" {
		p.errorf(keyTok.line, "%s", msg)
		return
	}
	if len(toks) < 2 {
		p.errorf(keyTok.line, "entry %q has no level (want %s)", keyTok.s, levelList)
		return
	}
	e := Entry{Key: key, Line: keyTok.line}
	lt := toks[1]
	lv, ok := parseLevelName(lt.s)
	if !ok {
		if strings.EqualFold(lt.s, "fingerprint") {
			p.errorf(lt.line, "level \"fingerprint\" is not supported (use dane-only with TLSA records, or secure)")
		} else if strings.Contains(lt.s, "=") {
			p.errorf(lt.line, "entry %q has an attribute %q where the level should be (want %s)", keyTok.s, lt.s, levelList)
		} else {
			p.errorf(lt.line, "unknown level %q (want %s)", lt.s, levelList)
		}
		return
	}
	e.Level = lv
	var seen attrSet
	bad := false
	for _, at := range toks[2:] {
		name, val, hasEq := strings.Cut(at.s, "=")
		name = strings.ToLower(name)
		if !hasEq {
			p.errorf(at.line, "attribute %q has no value (want name=value)", at.s)
			bad = true
			continue
		}
		if val == "" {
			p.errorf(at.line, "attribute %s= has an empty value", name)
			bad = true
			continue
		}
		dup := func(b *bool) bool {
			if *b {
				p.errorf(at.line, "attribute %s= given twice", name)
				bad = true
				return true
			}
			*b = true
			return false
		}
		switch name {
		case "match":
			if dup(&seen.match) {
				continue
			}
			for _, m := range strings.FieldsFunc(val, func(r rune) bool { return r == ':' || r == ',' }) {
				nm, msg := normalizeMatch(m)
				if msg != "" {
					p.errorf(at.line, "%s", msg)
					bad = true
					continue
				}
				if !slices.Contains(e.Match, nm) {
					e.Match = append(e.Match, nm)
				}
			}
			if len(e.Match) == 0 && !bad {
				p.errorf(at.line, "match= names no host")
				bad = true
			}
		case "protocols":
			if dup(&seen.protocols) {
				continue
			}
			v, msg := parseProtocols(val)
			if msg != "" {
				p.errorf(at.line, "%s", msg)
				bad = true
				continue
			}
			e.MinVersion = v
		case "on-failure":
			if dup(&seen.onFailure) {
				continue
			}
			switch strings.ToLower(val) {
			case "defer":
				e.OnFailure = Defer
			case "bounce":
				e.OnFailure = Bounce
			default:
				p.errorf(at.line, "on-failure=%s: want defer or bounce", val)
				bad = true
			}
		case "mode":
			if dup(&seen.mode) {
				continue
			}
			switch strings.ToLower(val) {
			case "enforce":
				e.Mode = Enforce
			case "testing":
				e.Mode = Testing
			default:
				p.errorf(at.line, "mode=%s: want enforce or testing", val)
				bad = true
			}
		case "override":
			if dup(&seen.override) {
				continue
			}
			switch strings.ToLower(val) {
			case "yes", "true":
				e.Override = true
			case "no", "false":
				e.Override = false
			default:
				p.errorf(at.line, "override=%s: want yes or no", val)
				bad = true
			}
		case "ciphers", "exclude", "tafile", "servername", "connection_reuse", "enable_rpk", "connection_cache", "trust_anchor_file":
			p.errorf(at.line, "Postfix attribute %s= is not supported", name)
			bad = true
		default:
			p.errorf(at.line, "unknown attribute %q (want match, protocols, on-failure, mode or override)", name)
			bad = true
		}
	}
	if bad {
		return
	}
	p.add(e, seen)
}

// add checks level/attribute consistency and duplicates, then stores e.
// Errors are reported on e.Line.
func (p *tableParser) add(e Entry, seen attrSet) {
	switch {
	case seen.match && e.Level != Secure:
		p.errorf(e.Line, "entry %q: match= applies only to level secure, not %s (verify matches the MX host name)", e.Key, e.Level)
		return
	case seen.protocols && e.Level == None:
		p.errorf(e.Line, "entry %q: protocols= has no effect at level none", e.Key)
		return
	case seen.onFailure && (e.Level == None || e.Level == May):
		p.errorf(e.Line, "entry %q: on-failure= has no effect at level %s, which falls back to plaintext", e.Key, e.Level)
		return
	case seen.mode && e.Mode == Testing && (e.Level == None || e.Level == May):
		p.errorf(e.Line, "entry %q: mode=testing has no effect at level %s", e.Key, e.Level)
		return
	case e.Override && e.Key == DefaultKey:
		p.errorf(e.Line, "override=yes is not allowed on the default entry *: it would lower every published policy")
		return
	case e.Override && e.Mode == Testing:
		p.errorf(e.Line, "entry %q: override=yes cannot be combined with mode=testing", e.Key)
		return
	}
	if i, ok := p.t.byKey[e.Key]; ok {
		if prev := p.t.entries[i]; prev.Line > 0 {
			p.errorf(e.Line, "duplicate entry for %q (first on line %d)", e.Key, prev.Line)
		} else {
			p.errorf(e.Line, "duplicate entry for %q", e.Key)
		}
		return
	}
	p.t.byKey[e.Key] = len(p.t.entries)
	p.t.entries = append(p.t.entries, e)
}

const levelList = "none, may, encrypt, dane, dane-only, verify or secure"

func parseLevelName(s string) (Level, bool) {
	for i, n := range levelNames {
		if strings.EqualFold(s, n) {
			return Level(i), true
		}
	}
	return None, false
}

// normalizeKey validates and normalizes a table key; msg is non-empty on
// error.
func normalizeKey(k string) (key, msg string) {
	if k == DefaultKey {
		return k, ""
	}
	if strings.HasPrefix(k, "[") {
		host, port, err := splitNextHop(k)
		if err != nil {
			return "", fmt.Sprintf("invalid next-hop key %q (want [host] or [host]:port)", k)
		}
		h, msg := normalizeHost(host)
		if msg != "" {
			return "", fmt.Sprintf("invalid next-hop key %q: %s", k, msg)
		}
		if port == 0 {
			return "[" + h + "]", ""
		}
		return "[" + h + "]:" + strconv.Itoa(port), ""
	}
	if strings.Contains(k, ":") {
		return "", fmt.Sprintf("invalid key %q: a port needs a bracketed host, [host]:port", k)
	}
	lk := strings.ToLower(k)
	dot := strings.HasPrefix(lk, ".")
	d := strings.TrimSuffix(strings.TrimPrefix(lk, "."), ".")
	if msg := checkDomain(d); msg != "" {
		return "", fmt.Sprintf("invalid key %q: %s", k, msg)
	}
	if dot {
		return "." + d, ""
	}
	return d, ""
}

// normalizeHost normalizes a next-hop host: an IP address in canonical
// form, or a lower-case domain without a trailing dot.
func normalizeHost(h string) (string, string) {
	if a, err := netip.ParseAddr(h); err == nil && a.Zone() == "" {
		return a.Unmap().String(), ""
	}
	d := strings.TrimSuffix(strings.ToLower(h), ".")
	if msg := checkDomain(d); msg != "" {
		return "", msg
	}
	return d, ""
}

// normalizeMatch validates one match= name.
func normalizeMatch(m string) (string, string) {
	lm := strings.ToLower(m)
	switch lm {
	case "nexthop", "dot-nexthop":
		return lm, ""
	case "hostname":
		return "", "match=hostname is not supported: the MX host name comes from DNS and can be forged; use level verify"
	}
	dot := strings.HasPrefix(lm, ".")
	d := strings.TrimSuffix(strings.TrimPrefix(lm, "."), ".")
	if msg := checkDomain(d); msg != "" {
		return "", fmt.Sprintf("invalid match name %q: %s", m, msg)
	}
	if dot {
		return "." + d, ""
	}
	return d, ""
}

// checkDomain checks a lower-case domain name (RFC 1035 §2.3.4 lengths;
// letters, digits, hyphen and underscore). It returns a message or "".
func checkDomain(d string) string {
	if d == "" {
		return "empty domain name"
	}
	if len(d) > 253 {
		return "domain name longer than 253 bytes"
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return "empty label in domain name"
		}
		if len(label) > 63 {
			return "label longer than 63 bytes"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("invalid character %q in domain name", c)
			}
		}
	}
	return ""
}

// Versions known to Postfix's protocols= attribute, oldest first.
var protocolNames = []struct {
	name string
	v    uint16
}{
	{"sslv2", 0x0200}, {"sslv3", tls.VersionSSL30}, {"tlsv1", tls.VersionTLS10},
	{"tlsv1.1", tls.VersionTLS11}, {"tlsv1.2", tls.VersionTLS12}, {"tlsv1.3", tls.VersionTLS13},
}

func protocolVersion(s string) (uint16, bool) {
	for _, p := range protocolNames {
		if strings.EqualFold(s, p.name) {
			return p.v, true
		}
	}
	return 0, false
}

// parseProtocols turns a Postfix protocols= list into a minimum version
// (tls.VersionTLS12 or tls.VersionTLS13). See ParseTable.
func parseProtocols(val string) (uint16, string) {
	allowed := map[uint16]bool{tls.VersionTLS12: true, tls.VersionTLS13: true}
	var include map[uint16]bool
	items := strings.FieldsFunc(val, func(r rune) bool { return r == ':' || r == ',' })
	if len(items) == 0 {
		return 0, "protocols= names no protocol"
	}
	for _, item := range items {
		var op string
		name := item
		for _, o := range []string{">=", "<=", "!"} {
			if rest, ok := strings.CutPrefix(item, o); ok {
				op, name = o, rest
				break
			}
		}
		v, ok := protocolVersion(name)
		if !ok {
			return 0, fmt.Sprintf("protocols=: unknown protocol %q (want SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3, optionally with >=, <= or !)", name)
		}
		for av := range allowed {
			switch {
			case op == ">=" && av < v, op == "<=" && av > v, op == "!" && av == v:
				delete(allowed, av)
			}
		}
		if op == "" {
			if include == nil {
				include = map[uint16]bool{}
			}
			include[v] = true
		}
	}
	if include != nil {
		for av := range allowed {
			if !include[av] {
				delete(allowed, av)
			}
		}
	}
	switch {
	case !allowed[tls.VersionTLS13] && allowed[tls.VersionTLS12]:
		return 0, fmt.Sprintf("protocols=%s excludes TLSv1.3: maximum versions are not supported", val)
	case len(allowed) == 0:
		return 0, fmt.Sprintf("protocols=%s allows neither TLSv1.2 nor TLSv1.3, the only versions used (RFC 8996, RFC 9325)", val)
	case allowed[tls.VersionTLS12]:
		return tls.VersionTLS12, ""
	}
	return tls.VersionTLS13, ""
}
