package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/policy"
)

// Route says how mail for some recipient domains leaves: to the domain's MX
// hosts (RFC 5321 §5.1) or to a fixed next hop (a partner gateway or a
// smarthost), under which TLS policy, with which client certificate and
// credentials. It is the library's form of a Postfix transport(5) entry or
// an Exchange "connector with TLS".
type Route struct {
	// Domain selects the recipients: "example.com" matches that domain,
	// ".example.com" its subdomains, "*" every domain (a default route for
	// all outbound mail). Exact matches win over subdomain matches, longer
	// suffixes over shorter ones, and "*" comes last. Case-insensitive.
	Domain string

	// NextHop, when set, sends the mail to this host instead of the
	// recipient domain's MX hosts: "host", "host:port", "[host]:port" or an
	// IP literal ("192.0.2.1:587", "[2001:db8::1]:25"). The port defaults
	// to 25. A host name is resolved to addresses (A/AAAA), never to MX.
	// Empty means MX delivery.
	NextHop string

	// Policy is the route's own TLS level. Requirements it returns with
	// source "default" are reported with source "route".
	//
	// On an MX route (no NextHop) it is asked with the recipient domain
	// and, when it answers, decides; nil or policy.ErrNoPolicy means the
	// Connector's Policy.
	//
	// On a fixed next hop it is asked with the next hop in Postfix's
	// spelling "[host]:port" (as smtp_tls_policy_maps is), and it does not
	// decide alone: the requirement is the strictest of its answer, the
	// Connector's Policy's entry for the next hop itself and that Policy's
	// entry for the recipient domain (with its parent domains, the table's
	// "*" entry or the default level), so that routing a domain to a
	// gateway never weakens what was required for the domain. An entry
	// with override=yes still wins over the others; Requirement.Source and
	// Reason say which answer won. See policy.ForNextHop. The Connector's
	// Policy is asked only for its local part (policy.LookupLocal): a
	// recipient domain's MTA-STS policy or DANE records name its MX hosts,
	// not this next hop. At level Secure a fixed next hop with no match
	// names must present a certificate for the next-hop host (or a
	// subdomain of it), Postfix's "nexthop:dot-nexthop".
	Policy policy.Policy

	// Auth holds smarthost credentials (RFC 4954, SASL PLAIN, RFC 4616).
	// They are sent only on a TLS connection whose certificate passed a
	// verifying level's check (Verify, Secure, DANE with usable records):
	// without TLS the attempt fails with ErrAuthWithoutTLS, with TLS whose
	// certificate was not verified (May, Encrypt) with ErrAuthUnverifiedTLS,
	// because an active attacker who answers STARTTLS with a certificate of
	// its own reads the password as if it were plaintext. Use Verify or
	// Secure on such routes.
	Auth *Credentials

	// InsecureAuthUnverifiedTLS lets Auth be sent over TLS whose
	// certificate was not verified (levels May and Encrypt), protecting the
	// password from passive eavesdroppers only. Never over plaintext. False
	// (the zero value) requires a verified certificate.
	InsecureAuthUnverifiedTLS bool

	// ImplicitTLS makes the connection to NextHop TLS from the first byte
	// (RFC 8314 §3, "submissions" on port 465) instead of STARTTLS. The
	// Policy's level still decides the certificate check; levels that would
	// allow plaintext only relax that check, since there is no plaintext
	// mode to fall back to.
	ImplicitTLS bool

	// ClientCertificate is presented when the server asks for one (mutual
	// TLS). GetClientCertificate, if set, takes precedence (for example a
	// certstore's hot-reloading getter). Both nil: no client certificate.
	ClientCertificate    *tls.Certificate
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// Credentials for SMTP AUTH PLAIN (RFC 4616).
type Credentials struct {
	Identity string // authorization identity; usually empty
	Username string
	Password string
}

// String hides the password.
func (c *Credentials) String() string { return "Credentials{" + c.Username + ", ****}" }

// nextHop is a parsed Route.NextHop.
type nextHop struct {
	host string // without brackets
	port int
}

// key is the Postfix spelling "[host]:port", the policy lookup key.
func (h nextHop) key() string { return "[" + h.host + "]:" + strconv.Itoa(h.port) }

// parseNextHop parses Route.NextHop.
func parseNextHop(s string) (nextHop, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nextHop{}, fmt.Errorf("transport: empty next hop")
	}
	host, port := s, "25"
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return nextHop{}, fmt.Errorf("transport: malformed next hop %q", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return nextHop{}, fmt.Errorf("transport: malformed next hop %q", s)
			}
			port = rest[1:]
		}
	} else if strings.Count(s, ":") == 1 {
		var err error
		host, port, err = net.SplitHostPort(s)
		if err != nil {
			return nextHop{}, fmt.Errorf("transport: malformed next hop %q: %v", s, err)
		}
	} else if strings.Count(s, ":") > 1 && net.ParseIP(s) == nil {
		return nextHop{}, fmt.Errorf("transport: malformed next hop %q (bracket IPv6 literals)", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nextHop{}, fmt.Errorf("transport: bad port in next hop %q", s)
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !validHost(host) {
		return nextHop{}, fmt.Errorf("transport: bad host in next hop %q", s)
	}
	return nextHop{host: host, port: p}, nil
}

// validHost accepts an IP literal or a host name of letters, digits,
// hyphens, underscores and dots (RFC 1123 §2.1, leniently).
func validHost(h string) bool {
	if h == "" || len(h) > 253 || h[len(h)-1] == '.' {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.' && i > 0 && h[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// matchRoute returns the index of the route for domain, or -1 for plain MX
// delivery under the Connector's policy.
func matchRoute(routes []Route, domain string) int {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	best, bestLen := -1, -1
	for i := range routes {
		d := strings.ToLower(strings.TrimSpace(routes[i].Domain))
		switch {
		case d == domain:
			return i
		case strings.HasPrefix(d, ".") && strings.HasSuffix(domain, d):
			if len(d) > bestLen {
				best, bestLen = i, len(d)
			}
		case d == "*" && bestLen < 0:
			best, bestLen = i, 0
		}
	}
	return best
}

// hopRequirement is the requirement for the recipients of domain routed
// to the fixed next hop g.hop (policy.ForNextHop): the strictest of the
// Connector's Policy's local entry for the next hop ("[host]:port") and
// for domain (its parents, "*", the default level), and the route's own
// Policy's answer for the next hop. Published policies (MTA-STS, DANE
// records of domain) are not asked: they name domain's MX hosts, not this
// host. A lookup error other than policy.ErrNoPolicy is returned: the
// caller defers, never downgrades.
func (c *Connector) hopRequirement(ctx context.Context, g *group, domain string) (policy.Requirement, error) {
	key := g.hop.key()
	a := policy.NextHopAnswers{Key: key}
	var failures []policy.DiscoveryFailure
	ask := func(p policy.Policy, q string, local bool) (*policy.Requirement, error) {
		var r policy.Requirement
		var err error
		if local {
			r, err = policy.LookupLocal(ctx, p, q)
		} else {
			r, err = p.Lookup(ctx, q)
		}
		switch {
		case err == nil:
			return &r, nil
		case errors.Is(err, policy.ErrNoPolicy):
			failures = append(failures, policy.DiscoveryFailuresOf(err)...)
			return nil, nil
		}
		return nil, err
	}
	var err error
	if c.Policy != nil {
		if a.NextHop, err = ask(c.Policy, key, true); err != nil {
			return policy.Requirement{Domain: key}, err
		}
		if a.Domain, err = ask(c.Policy, domain, true); err != nil {
			return policy.Requirement{Domain: key}, err
		}
	}
	if r := g.route(c); r != nil && r.Policy != nil {
		if a.Route, err = ask(r.Policy, key, false); err != nil {
			return policy.Requirement{Domain: key}, err
		}
	}
	req := policy.ForNextHop(a)
	req.DiscoveryFailures = append(req.DiscoveryFailures, failures...)
	return req, nil
}

// splitHops decides the requirement of every group of recipients routed
// to a fixed next hop, per recipient domain (hopRequirement), and splits
// the group where its domains' requirements differ, so that each
// transaction is held to exactly its own recipients' requirement: one
// message to a smarthost for a strict and a lax domain goes out as two
// transactions. Recipients of domains whose lookup failed get a group of
// their own, deferred by deliverGroup. MX groups are returned as they are.
func (c *Connector) splitHops(ctx context.Context, env *Envelope, groups []*group) []*group {
	var out []*group
	for _, g := range groups {
		if g.hop == nil {
			out = append(out, g)
			continue
		}
		var parts []*group
		byDomain := map[string]*group{}
		for _, i := range g.idx {
			d := recipientDomain(env.Recipients[i].Address)
			p := byDomain[d]
			if p == nil {
				req, err := c.hopRequirement(ctx, g, d)
				for _, q := range parts {
					if err == nil && q.reqErr == nil && reflect.DeepEqual(q.req, req) {
						p = q
						break
					}
				}
				if p == nil {
					p = &group{domain: d, routeIdx: g.routeIdx, hop: g.hop, decided: true, req: req, reqErr: err}
					parts = append(parts, p)
				}
				byDomain[d] = p
			}
			p.idx = append(p.idx, i)
		}
		out = append(out, parts...)
	}
	return out
}
