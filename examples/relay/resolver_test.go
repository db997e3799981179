package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// -resolver names the one DNS server of outbound delivery; -dane-resolver
// is the same setting that also turns DANE on.
func TestResolverFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		resolver string
		dane     bool
		err      string
	}{
		{args: nil},
		{args: []string{"-resolver", "127.0.0.1:5353"}, resolver: "127.0.0.1:5353"},
		{args: []string{"-dane-resolver", "127.0.0.1:5353"}, resolver: "127.0.0.1:5353", dane: true},
		{args: []string{"-resolver", "127.0.0.1:5353", "-dane-resolver", "127.0.0.1:5353"}, resolver: "127.0.0.1:5353", dane: true},
		{args: []string{"-resolver", "127.0.0.1:53", "-dane-resolver", "127.0.0.1:5353"}, err: "-dane-resolver"},
		{args: []string{"-resolver", "nowhere"}, err: "-resolver"},
	} {
		cfg, err := parseFlags(append([]string{"-data", t.TempDir(), "-hostname", "relay.test"}, tc.args...), io.Discard)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want one about %s", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if cfg.Resolver != tc.resolver || (cfg.DANEResolver != "") != tc.dane {
			t.Errorf("%q: -resolver %q, DANE %v; want %q, %v", tc.args, cfg.Resolver, cfg.DANEResolver != "", tc.resolver, tc.dane)
		}
	}
}

// With -resolver (and with -dane-resolver, its alias that also enables
// DANE) every lookup of a delivery goes to that one resolver: the MX and
// address of the destination and, with -mta-sts, the "_mta-sts" TXT record
// and the policy host's address (RFC 8461 §3.1, §3.3). The fake resolver
// on loopback counts the queries per name; the relay gets no other
// resolver (only the dialer mapping the documentation address of the MX
// to a loopback server is a test seam). The policy host's address is an
// unused loopback address, so the fetch fails and -default-tls may
// delivers: the point is where the names were looked up.
func TestResolverFlagCoversEveryLookup(t *testing.T) {
	for _, flag := range []string{"-resolver", "-dane-resolver"} {
		t.Run(flag, func(t *testing.T) {
			mx := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.one.example", Cert: transporttest.GoodCert})
			policyIP := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(256), 1+rand.IntN(250))
			ns := fakedns.Start(t, map[string]fakedns.Zone{
				"one.example":          {RRs: []dns.RR{fakedns.MX(10, "mx.one.example")}},
				"mx.one.example":       {RRs: []dns.RR{fakedns.A("192.0.2.60")}},
				"_mta-sts.one.example": {RRs: []dns.RR{fakedns.TXT("v=STSv1; id=1;")}},
				"mta-sts.one.example":  {RRs: []dns.RR{fakedns.A(policyIP)}},
			})
			users := writeUsers(t, "alice", "s3cret")
			tr := startRelayWith(t, func(r *Relay) {
				r.connector.Dialer = &transporttest.Dialer{Map: map[string]string{"192.0.2.60:25": mx.Addr}}
			}, "-users", users, flag, ns.Addr, "-mta-sts", "-default-tls", "may", "-retry", "1h")
			if (tr.connector.DANE != nil) != (flag == "-dane-resolver") {
				t.Fatalf("%s: Connector.DANE = %v", flag, tr.connector.DANE)
			}
			c := tr.dialTLS(t, "submission")
			if err := auth(c, "alice", "s3cret"); err != nil {
				t.Fatal(err)
			}
			if err := send(c, "alice@localhost", []string{"dest@one.example"}, testBody); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "delivery to mx.one.example", 30*time.Second, func() bool { return len(mx.Messages()) == 1 })
			for _, q := range []struct {
				name string
				typ  uint16
			}{{"one.example", dns.TypeMX}, {"mx.one.example", dns.TypeA}, {"_mta-sts.one.example", dns.TypeTXT}, {"mta-sts.one.example", dns.TypeA}} {
				if n := ns.Count("", q.name, q.typ); n == 0 {
					t.Errorf("%s %s was not looked up at the %s resolver", q.name, dns.TypeToString[q.typ], flag)
				}
			}
			if !strings.Contains(tr.logs.String(), "sts-policy-fetch-error") {
				t.Errorf("the policy fetch from %s did not fail as arranged", policyIP)
			}
		})
	}
}
