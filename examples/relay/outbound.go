package main

import (
	"context"
	"crypto/x509"
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
		def:       policy.Fixed{Level: cfg.DefaultTLS, OnFailure: cfg.OnTLSFailure, InsecurePlaintext: cfg.DefaultTLS == policy.None},
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
// domain). A next hop "[host]:port" is no domain to ask MTA-STS or DANE
// about: it gets LookupLocal.
func (p *outboundPolicy) Lookup(ctx context.Context, key string) (policy.Requirement, error) {
	if strings.HasPrefix(key, "[") {
		return p.LookupLocal(ctx, key)
	}
	return p.bounce(p.std.Lookup(ctx, key))
}

// LookupLocal implements policy.LocalPolicy: the table and -default-tls
// alone. The Connector holds a fixed next hop (-route, -smarthost) to the
// strictest of this for "[host]:port" and for the recipient domain
// (policy.ForNextHop); published policies do not apply to it, and the
// Connector still checks TLSA records for it with -dane-resolver when it
// is reached on port 25 (Connector.DANE).
func (p *outboundPolicy) LookupLocal(ctx context.Context, key string) (policy.Requirement, error) {
	return p.bounce(p.std.LookupLocal(ctx, key))
}

// bounce applies -on-tls-failure=bounce.
func (p *outboundPolicy) bounce(req policy.Requirement, err error) (policy.Requirement, error) {
	if err == nil && p.bounceAll {
		req.OnFailure = policy.Bounce
	}
	return req, err
}

// buildRoutes turns -route and -smarthost into transport routes; their TLS
// requirement is the Connector's (see outboundPolicy.LookupLocal).
func buildRoutes(cfg *Config) ([]transport.Route, error) {
	var out []transport.Route
	for _, r := range cfg.Routes {
		out = append(out, transport.Route{Domain: r.Domain, NextHop: r.NextHop})
	}
	if cfg.Smarthost != "" {
		r := transport.Route{Domain: "*", NextHop: cfg.Smarthost}
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
