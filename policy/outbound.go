package policy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Outbound is the TLS policy of an MTA's outbound hops as an administrator
// states it: a table of per-destination entries (Postfix's
// smtp_tls_policy_maps), a default level for the destinations the table
// has no entry for (smtp_tls_security_level), and the policies the
// destinations publish (MTA-STS, RFC 8461; DANE, RFC 7672). Use it as a
// Connector's Policy:
//
//	p := &policy.Outbound{Table: table, Default: policy.Fixed{Level: policy.May},
//		MTASTS: stsClient, DANE: danePolicy, Logger: log}
//
// It is a [Standard] (DANE over MTA-STS, the table raising but never
// silently lowering a published policy, a testing-mode policy checked and
// reported over the enforced floor) whose default steps aside where the
// table has an entry: the default is the level "where the table has no
// entry" (its "*" entry counts as one), so a table entry weaker than the
// default is kept instead of being raised by a Default floor.
//
// A next hop "[host]:port" is no domain to ask MTA-STS or DANE about:
// Lookup answers it from the table and the default alone, as LookupLocal
// does. Default.OnFailure == Bounce turns every answer's Defer into Bounce
// (the administrator's "bounce on any TLS failure"), as Exchange 2003 does.
//
// Set the fields before the first lookup and do not change them after.
type Outbound struct {
	// Table is the administrator's table; nil for none.
	Table *Table
	// Default answers where the table has no entry. Its zero Level means
	// Verify unless InsecurePlaintext is set (see Fixed).
	Default Fixed
	// DefaultReason is the Reason of the default's answers; "" gives
	// "default level LEVEL".
	DefaultReason string
	// MTASTS is the MTA-STS lookup (an *mtasts.Client), nil to disable.
	MTASTS Policy
	// DANE is the DANE lookup (a *dane.Policy), nil to disable. A
	// Connector with this Outbound as its Policy checks each MX host
	// through the same lookup (DANEMember).
	DANE Policy
	// Logger receives one line per applied override. Nil discards.
	Logger *slog.Logger

	once sync.Once
	std  *Standard
}

var _ LocalPolicy = (*Outbound)(nil)

// standard builds the Standard the lookups use, once.
// DANEMember returns p.DANE. It implements the DANEMember interface.
func (p *Outbound) DANEMember() Policy { return p.DANE }

func (p *Outbound) standard() *Standard {
	p.once.Do(func() {
		p.std = &Standard{MTASTS: p.MTASTS, DANE: p.DANE, Default: Func(p.defaultLevel), Logger: p.Logger}
		if p.Table != nil { // a nil *Table in the interface would not be nil
			p.std.Static = p.Table
		}
	})
	return p.std
}

// defaultLevel is the Default's answer for key, abstaining (ErrNoPolicy)
// where the table has an entry, so that the entry decides.
func (p *Outbound) defaultLevel(ctx context.Context, key string) (Requirement, error) {
	if p.Table != nil {
		if _, err := p.Table.Lookup(ctx, key); err == nil {
			return Requirement{}, fmt.Errorf("%w: the table has an entry for %s", ErrNoPolicy, key)
		}
	}
	req, err := p.Default.Lookup(ctx, key)
	req.Reason = p.DefaultReason
	if req.Reason == "" {
		req.Reason = "default level " + req.Level.String()
	}
	return req, err
}

// Lookup implements Policy for MX delivery: domain is the recipient
// domain, or a next hop "[host]:port", which gets LookupLocal.
func (p *Outbound) Lookup(ctx context.Context, domain string) (Requirement, error) {
	if strings.HasPrefix(domain, "[") {
		return p.LookupLocal(ctx, domain)
	}
	return p.bounce(p.standard().Lookup(ctx, domain))
}

// LookupLocal implements LocalPolicy: the table and the default alone. A
// Connector holds a fixed next hop to the strictest of this for
// "[host]:port" and for the recipient domain (ForNextHop); published
// policies do not apply to it.
func (p *Outbound) LookupLocal(ctx context.Context, domain string) (Requirement, error) {
	return p.bounce(p.standard().LookupLocal(ctx, domain))
}

// bounce applies Default.OnFailure == Bounce to every answer.
func (p *Outbound) bounce(req Requirement, err error) (Requirement, error) {
	if err == nil && p.Default.OnFailure == Bounce {
		req.OnFailure = Bounce
	}
	return req, err
}
