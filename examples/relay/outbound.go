package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/transport"
)

// outboundPolicy is the TLS policy of every outbound hop, one
// policy.Standard for MX delivery:
//
//   - Static: the -policy table;
//   - MTASTS, DANE: the published policies, with -mta-sts and
//     -dane-resolver (see publishedPolicies);
//   - Default: the -default-tls level, for destinations the table has no
//     entry for (its "*" entry counts as one).
//
// policy.Standard's precedence then applies: DANE over MTA-STS where
// DNSSEC-authenticated TLSA records exist (RFC 8461 §2), the table raising
// a published policy but never silently lowering it (override=yes lowers,
// logged), an MTA-STS testing policy checked and reported over the
// enforced floor. A table entry that is weaker than -default-tls is kept,
// as -default-tls documents (it is the level "where the table has no
// entry", Postfix's smtp_tls_security_level beside smtp_tls_policy_maps),
// instead of being raised by a Default floor.
//
// -on-tls-failure=bounce turns every "defer" into "bounce".
type outboundPolicy struct {
	table     *policy.Table // nil: no -policy
	def       policy.Fixed  // -default-tls, -on-tls-failure
	std       *policy.Standard
	bounceAll bool
}

// newOutboundPolicy builds the policy from the table (nil for none) and the
// published-policy lookups of publishedPolicies (an *mtasts.Client and a
// *dane.Policy, either may be absent).
func newOutboundPolicy(cfg *Config, table *policy.Table, published []policy.Policy) *outboundPolicy {
	p := &outboundPolicy{
		table:     table,
		def:       policy.Fixed{Level: cfg.DefaultTLS, OnFailure: cfg.OnTLSFailure},
		bounceAll: cfg.OnTLSFailure == policy.Bounce,
	}
	p.std = &policy.Standard{Default: policy.Func(p.defaultLevel)}
	var local []policy.Policy
	if table != nil { // a nil *Table in the interface would not be nil
		local = append(local, table)
	}
	for _, m := range published {
		switch m := m.(type) {
		case *mtasts.Client:
			p.std.MTASTS = m
		case *dane.Policy:
			p.std.DANE = m
		default:
			// Not produced by publishedPolicies today; never dropped
			// silently: it competes with the table (strictest wins).
			local = append(local, m)
		}
	}
	switch len(local) {
	case 0:
	case 1:
		p.std.Static = local[0]
	default:
		p.std.Static = policy.Combine(local...)
	}
	return p
}

// defaultLevel is the -default-tls level for key, abstaining
// (policy.ErrNoPolicy) where the table has an entry, so that the entry
// decides.
func (p *outboundPolicy) defaultLevel(ctx context.Context, key string) (policy.Requirement, error) {
	if p.table != nil {
		if _, err := p.table.Lookup(ctx, key); err == nil {
			return policy.Requirement{}, fmt.Errorf("%w: the table has an entry for %s", policy.ErrNoPolicy, key)
		}
	}
	req, err := p.def.Lookup(ctx, key)
	req.Reason = "-default-tls " + p.def.Level.String()
	return req, err
}

// Lookup implements policy.Policy for MX delivery (key is the recipient
// domain). Fixed next hops have their own policy (forRoute).
func (p *outboundPolicy) Lookup(ctx context.Context, key string) (policy.Requirement, error) {
	if strings.HasPrefix(key, "[") {
		// Not reached through the Connector (route policies always
		// answer), but a next hop is no domain to ask MTA-STS or DANE
		// about.
		return p.forRoute("").Lookup(ctx, key)
	}
	req, err := p.std.Lookup(ctx, key)
	if err == nil && p.bounceAll {
		req.OnFailure = policy.Bounce
	}
	return req, err
}

// forRoute is the policy of a fixed next hop (-route, -smarthost): the table
// entry for "[host]:port" or "[host]", else the entry for the route's domain
// (as Postfix looks up the next-hop domain), else the -default-tls level.
// The Connector looks a fixed next hop up by "[host]:port" only (route
// policy, then its own Policy, with the same key), so the fallback to the
// route's domain is done here. Published policies (MTA-STS, DANE records
// as a Requirement) do not apply to an administrator's fixed next hop; the
// Connector still checks TLSA records for it with -dane-resolver when it
// is reached on port 25 (Connector.DANE).
func (p *outboundPolicy) forRoute(domain string) policy.Policy {
	return policy.Func(func(ctx context.Context, key string) (policy.Requirement, error) {
		if p.table != nil {
			keys := []string{key}
			if d := strings.TrimPrefix(domain, "."); d != "" && d != "*" {
				keys = append(keys, d)
			}
			for _, k := range keys {
				req, err := p.table.Lookup(ctx, k)
				if err == nil {
					if p.bounceAll {
						req.OnFailure = policy.Bounce
					}
					return req, nil
				}
				if !errors.Is(err, policy.ErrNoPolicy) {
					return req, err
				}
			}
		}
		req, err := p.def.Lookup(ctx, key)
		req.Reason = "-default-tls " + p.def.Level.String()
		return req, err
	})
}

// routes turns -route and -smarthost into transport routes.
func buildRoutes(cfg *Config, pol *outboundPolicy) ([]transport.Route, error) {
	var out []transport.Route
	for _, r := range cfg.Routes {
		out = append(out, transport.Route{Domain: r.Domain, NextHop: r.NextHop, Policy: pol.forRoute(r.Domain)})
	}
	if cfg.Smarthost != "" {
		r := transport.Route{Domain: "*", NextHop: cfg.Smarthost, Policy: pol.forRoute("*")}
		if cfg.SmartUser != "" {
			pw, err := os.ReadFile(cfg.SmartPWFile)
			if err != nil {
				return nil, fmt.Errorf("-smarthost-password-file: %w", err)
			}
			r.Auth = &transport.Credentials{Username: cfg.SmartUser, Password: strings.TrimRight(string(pw), "\r\n")}
		}
		out = append(out, r)
	}
	return out, nil
}

// loadRoots reads -outbound-ca.
func loadRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-outbound-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("-outbound-ca: %s holds no PEM certificate", path)
	}
	return pool, nil
}
