package policy

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The text format of static tables: tokens, keys, attributes and protocol
// lists (see ParseTable).

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
			// Duplicates are folded, keeping the first occurrence's
			// place; a set keeps this linear in the number of names.
			inMatch := make(map[string]bool)
			for _, m := range strings.FieldsFunc(val, func(r rune) bool { return r == ':' || r == ',' }) {
				nm, msg := normalizeMatch(m)
				if msg != "" {
					p.errorf(at.line, "%s", msg)
					bad = true
					continue
				}
				if !inMatch[nm] {
					inMatch[nm] = true
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
