package transporttest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/smtpclient"
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

// ExampleStartTransportServer runs an application's own transport.Server
// on loopback, sends it a message over STARTTLS with the client
// configuration that trusts it, and waits for the message instead of
// polling. In a test, use NewTransportServer(t, srv), which closes it when
// the test ends.
func ExampleStartTransportServer() {
	srv, err := transporttest.StartTransportServer(&transport.Server{
		Hostname: "mx.example.test",
		// The application's Handler; a nil Handler accepts every message.
		Handler: transport.HandlerFunc(func(ctx context.Context, env *transport.Envelope, body io.Reader) error {
			_, err := io.Copy(io.Discard, body)
			return err
		}),
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&smtpclient.Dialer{TLSConfig: srv.ClientTLSConfig()}).Dial(ctx, srv.Addr)
	if err != nil {
		panic(err)
	}
	if err := c.Send(ctx, "alice@example.org", "bob@example.test", "Subject: hi\r\n\r\nHello.\r\n", false); err != nil {
		panic(err)
	}
	c.Quit(ctx)

	msgs, err := srv.WaitMessages(ctx, 1)
	if err != nil {
		panic(err)
	}
	env := msgs[0].Envelope
	fmt.Println(env.From, "→", env.Recipients[0].Address, "over", env.TLS.VersionName())
	fmt.Println("MAIL FROM in plaintext:", transporttest.Contains(srv.Seen(), "MAIL FROM"))
	// Output:
	// alice@example.org → bob@example.test over TLSv1.3
	// MAIL FROM in plaintext: false
}

// ExampleStartResolver publishes an MX host with a DANE TLSA record in a
// DNSSEC-signed zone, and delivers to it with DANE (RFC 7672): the fake
// resolver answers every lookup of the delivery, and the Dialer sends the
// MX host's documentation address to the test server. In a test, use
// NewResolver(t, zones).
func ExampleStartResolver() {
	mx, err := transporttest.StartServer(transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "mx.example.test"})
	if err != nil {
		panic(err)
	}
	defer mx.Close()
	dns, err := transporttest.StartResolver(map[string]transporttest.Zone{
		"example.test":             {MX: []net.MX{{Host: "mx.example.test", Pref: 10}}, Secure: true},
		"mx.example.test":          {Addrs: []string{"192.0.2.10"}, Secure: true},
		"_25._tcp.mx.example.test": {TLSA: []policy.TLSA{transporttest.TLSAFor(mx.Certificate.Leaf)}, Secure: true},
	})
	if err != nil {
		panic(err)
	}
	defer dns.Close()

	c := &transport.Connector{
		Hostname: "mail.example.org",
		DNS:      dns.DNSSEC(), // every lookup, with the AD bit DANE needs
		DANE:     &dane.Policy{},
		Policy:   policy.Fixed{Level: policy.May},
		Dialer:   &transporttest.Dialer{Map: map[string]string{"192.0.2.10:25": mx.Addr}},
		RootCAs:  x509.NewCertPool(), // trust nothing but the TLSA record
	}
	defer c.Close()
	msg := []byte("Subject: hi\r\n\r\nHello over DANE.\r\n")
	env := &transport.Envelope{From: "alice@example.org", Recipients: []transport.Recipient{{Address: "bob@example.test"}}}
	res, err := c.Deliver(context.Background(), env, bytes.NewReader(msg), int64(len(msg)))
	if err != nil {
		panic(err)
	}
	r := res.Recipients[0]
	// RootCAs trusts nothing: only the TLSA record can verify the server.
	fmt.Println(r.Status, "verified:", r.TLS.Verified, "SNI:", r.TLS.ServerName)
	// Output:
	// delivered verified: true SNI: mx.example.test
}

// ExampleCA_IssueLocalhost makes a server certificate a client can verify
// whether it dials localhost, 127.0.0.1 or [::1].
func ExampleCA_IssueLocalhost() {
	ca, err := transporttest.NewCA("my app's test CA")
	if err != nil {
		panic(err)
	}
	leaf, err := ca.IssueLocalhost()
	if err != nil {
		panic(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", leaf.ServerTLSConfig())
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), ca.ClientTLSConfig("127.0.0.1"))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println(leaf.X509.DNSNames, leaf.X509.IPAddresses, "verified:", len(c.ConnectionState().VerifiedChains) > 0)
	// Output:
	// [localhost] [127.0.0.1 ::1] verified: true
}
