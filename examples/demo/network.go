package main

import (
	"context"
	"net"
	"strings"

	"github.com/mailtls/mailtls/transport/transporttest"
)

// fakeDNS is the demo's DNS: a struct of maps, given to the Connector as its
// Resolver, so that no query leaves the machine. It satisfies
// transport.Resolver.
type fakeDNS struct {
	mx   map[string][]*net.MX
	addr map[string][]net.IPAddr
}

func (d *fakeDNS) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if mx, ok := d.mx[canon(name)]; ok {
		return mx, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (d *fakeDNS) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if a, ok := d.addr[canon(host)]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func canon(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// demoNet maps the two destination domains to the loopback servers: each
// domain has an MX host with a documentation address (RFC 5737), and the
// Dialer connects those addresses to the servers' loopback ports. It
// refuses anything else, so the demo cannot reach the network.
type demoNet struct {
	dns    *fakeDNS
	dialer *transporttest.Dialer
}

type host struct {
	domain, mx, ip string
	loopback       string // the server's 127.0.0.1:port
}

func newDemoNet(hosts ...host) *demoNet {
	n := &demoNet{
		dns:    &fakeDNS{mx: map[string][]*net.MX{}, addr: map[string][]net.IPAddr{}},
		dialer: &transporttest.Dialer{Map: map[string]string{}},
	}
	for _, h := range hosts {
		n.dns.mx[h.domain] = []*net.MX{{Host: h.mx + ".", Pref: 10}}
		n.dns.addr[h.mx] = []net.IPAddr{{IP: net.ParseIP(h.ip)}}
		n.dialer.Map[net.JoinHostPort(h.ip, "25")] = h.loopback
	}
	return n
}
