package policy

import "strings"

// MatchMX reports whether the MX host name host matches the policy pattern
// pattern (RFC 8461 §4.1). Comparison is case-insensitive and ignores a
// trailing dot. A pattern "*.example.com" matches exactly one additional
// leftmost label: it matches "mx.example.com" but neither "example.com" nor
// "a.b.example.com". Any other pattern must equal host. An empty host or
// pattern never matches.
func MatchMX(pattern, host string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if pattern == "" || host == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		label, rest, ok := strings.Cut(host, ".")
		return ok && label != "" && rest == suffix && suffix != ""
	}
	return pattern == host
}

// AllowsMX reports whether host may be used as an MX for r: r has no MX
// patterns, or host matches one (MatchMX; RFC 8461 §4.1).
func (r Requirement) AllowsMX(host string) bool {
	if len(r.MXPatterns) == 0 {
		return true
	}
	for _, p := range r.MXPatterns {
		if MatchMX(p, host) {
			return true
		}
	}
	return false
}
