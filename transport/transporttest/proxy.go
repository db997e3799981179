package transporttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// ProxyMode selects what a Proxy does to STARTTLS.
type ProxyMode int

// Proxy modes.
const (
	// Transparent forwards everything unchanged (the server's STARTTLS is
	// offered and, if the client uses it, the proxy stops parsing lines).
	Transparent ProxyMode = iota
	// StripSTARTTLS removes STARTTLS from EHLO replies and answers a
	// STARTTLS command itself with 502, as a downgrade attacker does.
	StripSTARTTLS
	// RefuseSTARTTLS forwards the EHLO reply (STARTTLS offered) but
	// answers the STARTTLS command itself with "454 4.7.0 TLS not
	// available due to temporary reason" (RFC 3207 §4).
	RefuseSTARTTLS
)

// Proxy is a man-in-the-middle between an SMTP client and an upstream
// server, on 127.0.0.1. It records every byte the client sent through it.
type Proxy struct {
	// Addr is "127.0.0.1:port".
	Addr     string
	Host     string
	Port     int
	Upstream string
	Mode     ProxyMode

	l  net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	client bytes.Buffer
	conns  map[net.Conn]struct{}
	closed bool
}

// NewStrippingProxy starts a proxy to upstream that removes STARTTLS from
// the EHLO reply. It is closed when tb's test ends.
func NewStrippingProxy(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	return NewProxy(tb, upstream, StripSTARTTLS)
}

// NewSTARTTLSErrorProxy starts a proxy to upstream that offers STARTTLS but
// answers the command with a 454 error.
func NewSTARTTLSErrorProxy(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	return NewProxy(tb, upstream, RefuseSTARTTLS)
}

// NewProxy starts a proxy in the given mode.
func NewProxy(tb testing.TB, upstream string, mode ProxyMode) *Proxy {
	tb.Helper()
	p, err := StartProxy(upstream, mode)
	if err != nil {
		tb.Fatalf("transporttest: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// StartProxy is NewProxy for use outside tests; the caller must Close it.
func StartProxy(upstream string, mode ProxyMode) (*Proxy, error) {
	if h, _, err := net.SplitHostPort(upstream); err != nil || !net.ParseIP(h).IsLoopback() {
		return nil, fmt.Errorf("transporttest: proxy upstream %q must be a loopback address", upstream)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ta := l.Addr().(*net.TCPAddr)
	p := &Proxy{Addr: ta.String(), Host: ta.IP.String(), Port: ta.Port, Upstream: upstream, Mode: mode,
		l: l, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Seen returns a copy of everything the client sent, as it crossed
// the proxy (plaintext unless the client negotiated TLS through a
// Transparent proxy).
func (p *Proxy) Seen() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.client.Bytes())
}

// Close stops the proxy and waits for its connections to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.l.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *Proxy) handle(client net.Conn) {
	var d net.Dialer
	up, err := d.DialContext(context.Background(), "tcp", p.Upstream)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client) || !p.track(up) {
		client.Close()
		up.Close()
		return
	}
	var wmu sync.Mutex // serialises writes to client
	done := make(chan struct{})
	go func() { // upstream → client
		defer close(done)
		p.downstream(up, client, &wmu)
		client.Close()
	}()
	p.upstream(client, up, &wmu)
	up.Close()
	<-done
}

// upstream copies client lines to the server, intercepting STARTTLS.
func (p *Proxy) upstream(client, up net.Conn, wmu *sync.Mutex) {
	br := bufio.NewReader(client)
	inData := false
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			p.mu.Lock()
			p.client.WriteString(line)
			p.mu.Unlock()
			cmd := strings.ToUpper(strings.TrimRight(line, "\r\n"))
			switch {
			case inData:
				if cmd == "." {
					inData = false
				}
			case cmd == "DATA":
				inData = true
			case cmd == "STARTTLS" && p.Mode != Transparent:
				reply := "502 5.5.1 Command not recognized\r\n"
				if p.Mode == RefuseSTARTTLS {
					reply = "454 4.7.0 TLS not available due to temporary reason\r\n"
				}
				wmu.Lock()
				io.WriteString(client, reply)
				wmu.Unlock()
				continue
			case cmd == "STARTTLS":
				// Transparent: from here on the stream is TLS; copy raw.
				if _, err := io.WriteString(up, line); err != nil {
					return
				}
				p.copyRaw(br, up)
				return
			}
			if _, err := io.WriteString(up, line); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) copyRaw(r io.Reader, w io.Writer) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.client.Write(buf[:n])
			p.mu.Unlock()
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// downstream copies server replies to the client, removing STARTTLS from
// multi-line replies in StripSTARTTLS mode.
func (p *Proxy) downstream(up, client net.Conn, wmu *sync.Mutex) {
	if p.Mode == Transparent {
		io.Copy(client, up)
		return
	}
	br := bufio.NewReader(up)
	var reply []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		reply = append(reply, strings.TrimRight(line, "\r\n"))
		l := reply[len(reply)-1]
		if len(l) > 3 && l[3] == '-' {
			continue // more lines follow
		}
		if p.Mode == StripSTARTTLS {
			reply = stripSTARTTLS(reply)
		}
		wmu.Lock()
		_, werr := io.WriteString(client, strings.Join(reply, "\r\n")+"\r\n")
		wmu.Unlock()
		if werr != nil {
			return
		}
		reply = reply[:0]
	}
}

// stripSTARTTLS removes a STARTTLS line from a reply and repairs the
// continuation markers.
func stripSTARTTLS(lines []string) []string {
	var out []string
	for _, l := range lines {
		if len(l) >= 4 && strings.EqualFold(strings.TrimSpace(l[4:]), "STARTTLS") {
			continue
		}
		out = append(out, l)
	}
	for i := range out {
		if len(out[i]) < 4 {
			continue
		}
		sep := byte('-')
		if i == len(out)-1 {
			sep = ' '
		}
		out[i] = out[i][:3] + string(sep) + out[i][4:]
	}
	return out
}
