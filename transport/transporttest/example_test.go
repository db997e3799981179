package transporttest_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// A test in a host application: put a STARTTLS-stripping proxy in front of
// a TLS server and check that the application's mail code refuses to send
// in plaintext.
func Example() {
	// In a test, use NewTLSServer(t) and NewStrippingProxy(t, srv.Addr),
	// which fail t on error and close themselves when it ends.
	srv, _ := transporttest.StartServer(transporttest.ServerConfig{Cert: transporttest.GoodCert})
	defer srv.Close()
	proxy, _ := transporttest.StartProxy(srv.Addr, transporttest.StripSTARTTLS)
	defer proxy.Close()

	c := &transport.Connector{
		Hostname: "app.example.org",
		Routes:   []transport.Route{{Domain: "*", NextHop: proxy.Addr, Policy: policy.Fixed{Level: policy.Encrypt}}},
	}
	msg := []byte("Subject: x\r\n\r\nSECRET-BODY\r\n")
	env := &transport.Envelope{From: "app@example.org", Recipients: []transport.Recipient{{Address: "u@example.net"}}}
	res, _ := c.Deliver(context.Background(), env, bytes.NewReader(msg), int64(len(msg)))

	fmt.Println(res.Recipients[0].Status, res.Recipients[0].TLSFailure)
	fmt.Println("plaintext MAIL FROM seen:", transporttest.Contains(proxy.Seen(), "MAIL FROM"))
	fmt.Println("body seen:", transporttest.Contains(proxy.Seen(), "SECRET-BODY"))
	// Output:
	// deferred starttls-not-supported
	// plaintext MAIL FROM seen: false
	// body seen: false
}

// ExampleStartServer shows a server presenting an expired certificate,
// for testing a client's certificate checks, and what it records.
func ExampleStartServer() {
	srv, err := transporttest.StartServer(transporttest.ServerConfig{Cert: transporttest.ExpiredCert, Hostname: "mx.example.test"})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	leaf := srv.Certificate.Leaf
	fmt.Println(leaf.DNSNames, "expired:", leaf.NotAfter.Before(time.Now()))
	fmt.Println("messages:", len(srv.Messages()), "connections:", srv.Connections())
	// Output:
	// [mx.example.test] expired: true
	// messages: 0 connections: 0
}
