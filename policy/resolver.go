package policy

import (
	"context"
	"net"
)

// Resolver is the DNS that discovery of published policies uses for the
// lookups that need no DNSSEC: TXT records (the "_mta-sts" record, RFC 8461
// §3.1) and host addresses (the MTA-STS policy host, RFC 8461 §3.3).
// *net.Resolver, go-mockdns's *mockdns.Resolver and *dane.Resolver satisfy
// it. A name that does not exist, or has no records of the type, must be
// reported as a *net.DNSError with IsNotFound set. Implementations must be
// safe for concurrent use and honour ctx.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

var _ Resolver = (*net.Resolver)(nil)

type resolverKey struct{}

// WithResolver returns a copy of ctx carrying r as the resolver of the
// delivery in progress, so that one resolver setting covers every lookup
// of a delivery. A transport.Connector with DNS set passes its resolver to
// Policy.Lookup this way; lookups that have no resolver of their own use
// it: an mtasts.Client without Resolver looks up the TXT record and the
// policy host's address through it, and a dane.Policy without Resolver
// sends its DNSSEC queries to it when it is a *dane.Resolver. A resolver
// set on the lookup itself always wins. A nil r returns ctx unchanged.
func WithResolver(ctx context.Context, r Resolver) context.Context {
	if r == nil {
		return ctx
	}
	return context.WithValue(ctx, resolverKey{}, r)
}

// ResolverFrom returns the resolver WithResolver attached to ctx, or nil.
func ResolverFrom(ctx context.Context) Resolver {
	r, _ := ctx.Value(resolverKey{}).(Resolver)
	return r
}
