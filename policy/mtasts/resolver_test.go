package mtasts

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/foxcpp/go-mockdns"

	"github.com/mailtls/mailtls/internal/syncbuf"
	"github.com/mailtls/mailtls/policy"
)

// countingResolver is a go-mockdns resolver that counts the lookups it
// answers, by kind and name.
type countingResolver struct {
	*mockdns.Resolver
	mu sync.Mutex
	n  map[string]int // "TXT name" or "IP name"
}

func newCountingResolver(zones map[string]mockdns.Zone) *countingResolver {
	return &countingResolver{Resolver: &mockdns.Resolver{Zones: zones}, n: map[string]int{}}
}

func (r *countingResolver) count(key string) {
	r.mu.Lock()
	r.n[key]++
	r.mu.Unlock()
}

func (r *countingResolver) get(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[key]
}

func (r *countingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.count("TXT " + strings.TrimSuffix(name, "."))
	return r.Resolver.LookupTXT(ctx, name)
}

func (r *countingResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	r.count("IP " + strings.TrimSuffix(host, "."))
	return r.Resolver.LookupIPAddr(ctx, host)
}

// A Client without a Resolver looks the TXT record up through the
// resolver of the delivery in progress (policy.WithResolver, which a
// Connector with DNS set provides); its own Resolver, when set, wins.
func TestContextResolverForTXT(t *testing.T) {
	f := newFixture(t)
	f.ph.set("mta-sts.example.com", response{body: enforceBody})
	delivery := newCountingResolver(map[string]mockdns.Zone{
		"_mta-sts.example.com.": {TXT: []string{"v=STSv1; id=1;"}},
	})
	ctx := policy.WithResolver(context.Background(), delivery)

	c := f.newClient()
	c.Resolver = nil
	req, err := c.Lookup(ctx, "example.com")
	if err != nil || req.Source != policy.SourceMTASTS {
		t.Fatalf("Lookup through the delivery's resolver: %s, %v", req, err)
	}
	if n := delivery.get("TXT _mta-sts.example.com"); n != 1 {
		t.Errorf("%d TXT lookups at the delivery's resolver, want 1", n)
	}

	own := newCountingResolver(map[string]mockdns.Zone{})
	c = f.newClient()
	c.Resolver = own
	if _, err := c.Lookup(ctx, "example.org"); err == nil {
		t.Fatal("example.org has no record in the Client's own resolver")
	}
	if own.get("TXT _mta-sts.example.org") != 1 || delivery.get("TXT _mta-sts.example.org") != 0 {
		t.Errorf("the Client's own Resolver was not preferred: own %v, delivery %v", own.n, delivery.n)
	}
}

// Without DialContext the policy host is resolved through the resolver
// (the Client's own when it can look up addresses, else the delivery's),
// not the system's, and its addresses are dialled on the given port.
func TestPolicyHostResolvedThroughResolver(t *testing.T) {
	ph := newPolicyHost(t, "mta-sts.example.com")
	_, port, _ := net.SplitHostPort(ph.srv.Listener.Addr().String())
	zones := map[string]mockdns.Zone{"mta-sts.example.com.": {A: []string{"127.0.0.1"}}}
	for _, tc := range []struct {
		name      string
		own, ctxR *countingResolver
		want      *countingResolver
	}{
		{"the delivery's resolver", nil, newCountingResolver(zones), nil},
		{"the Client's own resolver", newCountingResolver(zones), newCountingResolver(map[string]mockdns.Zone{}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{}
			want := tc.ctxR
			if tc.own != nil {
				c.Resolver, want = tc.own, tc.own
			}
			ctx := policy.WithResolver(context.Background(), tc.ctxR)
			conn, err := c.dialPolicyHost(ctx, "tcp", net.JoinHostPort("mta-sts.example.com", port))
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
			if n := want.get("IP mta-sts.example.com"); n != 1 {
				t.Errorf("%d address lookups of the policy host at the expected resolver, want 1", n)
			}
			if tc.own != nil && tc.ctxR.get("IP mta-sts.example.com") != 0 {
				t.Error("the delivery's resolver was asked although the Client has its own")
			}
		})
	}
}

// A domain without an MTA-STS policy is logged at Info: it decides how
// the domain is delivered to (RFC 8461 §5).
func TestNoPolicyLoggedAtInfo(t *testing.T) {
	f := newFixture(t)
	var logs syncbuf.Buffer
	f.c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if _, err := f.c.Lookup(context.Background(), "example.com"); err == nil {
		t.Fatal("example.com publishes nothing")
	}
	if out := logs.String(); !strings.Contains(out, "level=INFO") || !strings.Contains(out, `msg="mta-sts no policy"`) ||
		!strings.Contains(out, "domain=example.com") {
		t.Errorf("log at Info level: %q, want the no-policy line", out)
	}
}
