package transport_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// Validate reports every configuration mistake the Connector would
// otherwise report on each message as a deferral, and Deliver refuses the
// same configurations.
func TestConnectorValidate(t *testing.T) {
	var nilTable *policy.Table
	good := func() *transport.Connector {
		return &transport.Connector{Hostname: clientName, Routes: []transport.Route{
			{Domain: "partner.example", NextHop: "[mx.partner.example]:25"},
			{Domain: ".example.net"},
			{Domain: "*", NextHop: "smarthost.example:587", ImplicitTLS: true, Auth: &transport.Credentials{Username: "u", Password: "p"}},
		}}
	}
	tests := []struct {
		name   string
		modify func(c *transport.Connector)
		want   string // "" for valid; else a substring of the error
	}{
		{"valid", func(*transport.Connector) {}, ""},
		{"IPv4 address literal", func(c *transport.Connector) { c.Hostname = "192.0.2.1" }, ""},
		{"IPv6 address literal", func(c *transport.Connector) { c.Hostname = "[2001:db8::1]" }, ""},
		{"localhost", func(c *transport.Connector) { c.Hostname = "localhost" }, "localhost"},
		{"localhost.localdomain", func(c *transport.Connector) { c.Hostname = "LOCALHOST.localdomain" }, "localhost"},
		{"not fully qualified", func(c *transport.Connector) { c.Hostname = "mail" }, "fully qualified"},
		{"space in name", func(c *transport.Connector) { c.Hostname = "bad name.example" }, "not a host name"},
		{"empty route domain", func(c *transport.Connector) { c.Routes[0].Domain = "" }, "Domain is empty"},
		{"wildcard route domain", func(c *transport.Connector) { c.Routes[1].Domain = "*.example.net" }, `".example.net"`},
		{"bad route domain", func(c *transport.Connector) { c.Routes[1].Domain = "exa mple.net" }, "not a domain"},
		{"duplicate route domain", func(c *transport.Connector) { c.Routes[1].Domain = "Partner.Example." }, "same Domain"},
		{"unparseable next hop", func(c *transport.Connector) { c.Routes[0].NextHop = "[mx.partner.example" }, "malformed next hop"},
		{"next hop port", func(c *transport.Connector) { c.Routes[0].NextHop = "mx.partner.example:99999" }, "bad port"},
		{"implicit TLS without next hop", func(c *transport.Connector) { c.Routes[1].ImplicitTLS = true }, "ImplicitTLS needs a NextHop"},
		{"credentials without next hop", func(c *transport.Connector) { c.Routes[1].Auth = &transport.Credentials{Username: "u"} }, "Auth needs a NextHop"},
		{"port", func(c *transport.Connector) { c.Port = 70000 }, "Port"},
		{"nil table as Policy", func(c *transport.Connector) { c.Policy = nilTable }, "nil *policy.Table"},
		{"nil table as route Policy", func(c *transport.Connector) { c.Routes[2].Policy = nilTable }, "nil *policy.Table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.modify(c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, transport.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrConfig saying %q", err, tt.want)
			}
			_, derr := c.Deliver(context.Background(), envelope("a@example.test"), bytes.NewReader(testBody), int64(len(testBody)))
			if !errors.Is(derr, transport.ErrConfig) {
				t.Errorf("Deliver with the same configuration: err = %v, want ErrConfig", derr)
			}
		})
	}
}

// The zero values agree: a Server and a Connector without Hostname both
// use this host's name when it is fully qualified (Postfix's myhostname).
// When it is not, the Server greets as "localhost" and the Connector's
// Validate refuses to start, instead of deferring every message.
func TestZeroHostnamesAgree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &transport.Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true},
		Handler: transport.HandlerFunc(func(context.Context, *transport.Envelope, io.Reader) error { return nil })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	greeting, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(greeting)
	if len(f) < 2 || f[0] != "220" {
		t.Fatalf("greeting %q", greeting)
	}
	serverName := f[1]

	host, _ := os.Hostname()
	c := &transport.Connector{}
	verr := c.Validate()
	t.Logf("os.Hostname %q, Server greets as %q, Connector.Validate: %v", host, serverName, verr)
	if verr != nil {
		if serverName != "localhost" || !errors.Is(verr, transport.ErrConfig) || !strings.Contains(verr.Error(), "Hostname") {
			t.Fatalf("Server greets as %q, Connector refuses with %v", serverName, verr)
		}
		return
	}
	// The Connector uses the same name in EHLO.
	rcv := transporttest.NewPlainServer(t)
	e := newEnv(t)
	e.single(rcv.Addr)
	c2 := e.connector(fixed(policy.May), nil)
	c2.Hostname = ""
	wantDelivered(t, deliver(t, c2, envelope("a@example.test")).Recipients[0])
	if names := rcv.EHLONames(); len(names) == 0 || names[0] != serverName {
		t.Fatalf("Connector EHLO %v, Server greets as %q", names, serverName)
	}
}
