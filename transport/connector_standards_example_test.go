package transport_test

import (
	"strings"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
)

// A Connector for the internet with the published policies: DANE through
// a validating resolver on loopback (RFC 7672), MTA-STS with a cache that
// survives restarts (RFC 8461), the administrator's table on top, and a
// TLS-RPT result per attempt (RFC 8460). The same *dane.Policy goes into
// the composition (to decide and explain) and into the Connector (to
// resolve MX hosts with DNSSEC and check each host against its own TLSA
// records). One resolver, Connector.DNS, answers every lookup: MX,
// addresses, TLSA, and the MTA-STS record and policy host (the Policy's
// members have no resolver of their own, so they use the Connector's; the
// MTA-STS client's Resolver is set too, for its background refresh). Run
// sts.Run(ctx) in the background for proactive refresh, and a
// tlsrpt.Aggregator once a day over the store.
func ExampleConnector_standards() {
	table, err := policy.ParseTable(strings.NewReader("partner.example secure match=partner.example\n"), "tls_policy")
	if err != nil {
		panic(err)
	}
	dns := &dane.Resolver{Addr: "127.0.0.1:53"}
	danePolicy := &dane.Policy{}
	sts := &mtasts.Client{Resolver: dns, Cache: &mtasts.DirCache{Dir: "/var/lib/relay/mta-sts"}}
	c := &transport.Connector{
		Hostname: "mail.example.org",
		DNS:      dns,
		Policy: &policy.Standard{
			Static:  table,
			MTASTS:  sts,
			DANE:    danePolicy,
			Default: policy.Fixed{Level: policy.May},
		},
		DANE:   danePolicy,
		TLSRPT: &tlsrpt.FileStore{Dir: "/var/lib/relay/tlsrpt"},
	}
	defer c.Close()
	// c.Deliver(ctx, env, body, size) for each message.
}
