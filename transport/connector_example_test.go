package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"net"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// ExampleConnector delivers one message under "verify" to a test server
// standing in for example.test's MX, with fake DNS. In production only
// Hostname, Policy, Routes (optional) and Logger are set: the zero
// Resolver, Dialer and RootCAs are the system's. In a test, use
// transporttest.NewServer(t, …) and transporttest.NewResolver(t, …), which
// close themselves when the test ends.
func ExampleConnector() {
	mx, err := transporttest.StartServer(transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "mx.example.test"})
	if err != nil {
		panic(err)
	}
	defer mx.Close()
	dns, err := transporttest.StartResolver(map[string]transporttest.Zone{
		"example.test":    {MX: []net.MX{{Host: "mx.example.test", Pref: 10}}},
		"mx.example.test": {Addrs: []string{"192.0.2.10"}},
	})
	if err != nil {
		panic(err)
	}
	defer dns.Close()

	c := &transport.Connector{
		Hostname: "mail.example.org",
		Policy:   policy.Fixed{Level: policy.Verify, OnFailure: policy.Bounce},
		Resolver: dns,
		Dialer:   &transporttest.Dialer{Map: map[string]string{"192.0.2.10:25": mx.Addr}},
		RootCAs:  mx.RootCAs(),
	}
	defer c.Close()

	msg := []byte("Subject: hello\r\n\r\nHello over verified TLS.\r\n")
	env := &transport.Envelope{From: "alice@example.org", Recipients: []transport.Recipient{{Address: "bob@example.test"}}}
	res, err := c.Deliver(context.Background(), env, bytes.NewReader(msg), int64(len(msg)))
	if err != nil {
		panic(err)
	}
	r := res.Recipients[0]
	fmt.Println(r.Recipient.Address, r.Status, r.Reply.Code)
	fmt.Println("via", r.RemoteMTA.Host, r.TLS.VersionName(), "verified:", r.TLS.Verified, "policy:", r.Requirement.Level, r.Requirement.Source)
	// Output:
	// bob@example.test delivered 250
	// via mx.example.test TLSv1.3 verified: true policy: verify default
}

// ExampleConnector_refused shows what a TLS failure looks like: a server
// without STARTTLS under "encrypt" with bounce-on-failure gives a
// permanent X.7.4 and the TLS-RPT result type.
func ExampleConnector_refused() {
	mx, err := transporttest.StartServer(transporttest.ServerConfig{}) // no STARTTLS
	if err != nil {
		panic(err)
	}
	defer mx.Close()
	c := &transport.Connector{
		Hostname: "mail.example.org",
		Routes: []transport.Route{{
			Domain:  "partner.example",
			NextHop: mx.Addr, // fixed next hop: no MX lookup
			Policy:  policy.Fixed{Level: policy.Encrypt, OnFailure: policy.Bounce},
		}},
	}
	msg := []byte("Subject: secret\r\n\r\nConfidential.\r\n")
	env := &transport.Envelope{From: "alice@example.org", Recipients: []transport.Recipient{{Address: "bob@partner.example"}}}
	res, _ := c.Deliver(context.Background(), env, bytes.NewReader(msg), int64(len(msg)))
	r := res.Recipients[0]
	fmt.Println(r.Status, r.Reply.Code, r.Reply.EnhancedCode, r.TLSFailure)
	fmt.Println("messages seen by the server:", len(mx.Messages()))
	// Output:
	// failed 554 5.7.4 starttls-not-supported
	// messages seen by the server: 0
}
