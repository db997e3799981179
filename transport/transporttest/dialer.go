package transporttest

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// Dialer connects to loopback test servers in place of the addresses a
// mail client computed from (fake) DNS, so MX logic can be tested with
// documentation addresses (RFC 5737 192.0.2.0/24) and the fixed port 25:
// Map["192.0.2.1:25"] = server.Addr. It refuses to dial any address that
// is neither mapped nor loopback, so a test can never reach the network.
// It satisfies transport.Dialer.
type Dialer struct {
	// Map rewrites "ip:port" to a loopback "ip:port".
	Map map[string]string

	mu     sync.Mutex
	dialed []string
}

// DialContext dials Map[addr] (or addr if it is loopback).
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	target, ok := d.Map[addr]
	if !ok {
		target = addr
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("transporttest: refusing non-loopback address %s", target)}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, target)
}

// Dialed returns the addresses asked for, in order, before mapping.
func (d *Dialer) Dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dialed...)
}
