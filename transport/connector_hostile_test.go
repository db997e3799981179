package transport_test

// Hostile-peer tests from the security review: each one puts an attacker
// (a forged DNS answer, a peer that injects, trickles or presents the wrong
// certificate, a sender's header) between the Connector and the next hop
// and asserts on what reached the socket.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// An attacker who forges "no MX records" makes the domain its own implicit
// MX (RFC 5321 §5.1). Under an enforced MTA-STS policy that host must still
// match the policy's mx patterns (RFC 8461 §5: the selected MX host), so it
// is never dialled.
func TestMTASTSPatternsApplyToImplicitMX(t *testing.T) {
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "example.test"})
	e := newEnv(t)
	e.host("example.test", "192.0.2.7", srv.Addr) // A record only: the MX RRset was stripped
	sts := func(mode policy.Mode) policy.Policy {
		return reqPolicy(policy.Requirement{Level: policy.Verify, Mode: mode, Source: policy.SourceMTASTS,
			MXPatterns: []string{"mx.example.test"}, MXAuthenticated: mode == policy.Enforce})
	}
	res := deliver(t, e.connector(sts(policy.Enforce), srv), envelope("user@example.test"))
	if r := res.Recipients[0]; r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrNoMX) {
		t.Errorf("implicit MX outside the patterns: %v %v, want deferred with ErrNoMX", r.Status, r.Reply)
	}
	if got := e.dialer.Dialed(); len(got) != 0 {
		t.Errorf("dialled %v; an implicit MX outside the enforced patterns must not be used", got)
	}
	if len(srv.Messages()) != 0 {
		t.Errorf("message delivered to a host the policy does not allow")
	}
	// Testing mode: used, and reported.
	res = deliver(t, e.connector(sts(policy.Testing), srv), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
}

// A fixed next hop given as an IP literal (or on a port other than the
// DANE port) is not looked up in DNS, so no TLSA records are checked. A
// dane-only requirement must then fail closed, not degrade to unauthenticated
// TLS, and a dane requirement that carries TLSA records must not degrade to
// plaintext. The attacker here answers with a self-signed certificate, or
// strips STARTTLS.
func TestDANEOnlyFixedHopWithoutTLSALookupFailsClosed(t *testing.T) {
	mitm := transporttest.NewUntrustedServer(t)
	e := newEnv(t)
	// The Connector's own default (may) is weaker than the route's level,
	// which therefore decides (policy.ForNextHop: strictest wins).
	c := e.connector(fixed(policy.May), nil)
	c.DANE = &dane.Policy{Resolver: &dane.Resolver{Addr: "127.0.0.1:1", Timeout: time.Second}}
	c.Routes = []transport.Route{{Domain: "partner.test", NextHop: mitm.Addr,
		Policy: reqPolicy(policy.Requirement{Level: policy.DANEOnly, Source: policy.SourceStatic})}}
	res := deliver(t, c, envelope("user@partner.test"))
	r := res.Recipients[0]
	if r.Status == transport.Delivered || !errors.Is(r.Reply, transport.ErrDANE) || r.TLSFailure != policy.FailureDANERequired {
		t.Errorf("dane-only hop without TLSA lookup: %v %q %v, want not delivered, ErrDANE, dane-required", r.Status, r.TLSFailure, r.Reply)
	}
	if len(mitm.Messages()) != 0 {
		t.Errorf("dane-only message delivered over unauthenticated TLS to %s", mitm.Addr)
	}

	plain := transporttest.NewPlainServer(t)
	c2 := e.connector(fixed(policy.May), nil)
	c2.DANE = c.DANE
	c2.Routes = []transport.Route{{Domain: "partner.test", NextHop: plain.Addr,
		Policy: reqPolicy(policy.Requirement{Level: policy.DANE, Source: policy.SourceDANE,
			TLSA: []policy.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{7}, 32)}}})}}
	res = deliver(t, c2, envelope("user@partner.test"))
	if r := res.Recipients[0]; r.Status == transport.Delivered || !errors.Is(r.Reply, transport.ErrDANE) {
		t.Errorf("dane with TLSA on a hop DANE does not check: %v %v, want fail closed", r.Status, r.Reply)
	}
	if transporttest.Contains(plain.Seen(), "MAIL FROM", "RCPT TO", bodyMarker) {
		t.Errorf("transaction sent in plaintext although TLSA records exist:\n%s", plain.Seen())
	}
}

// A dane-only decision made before any connection (no TLSA records, no
// Connector.DANE) is recorded for TLS-RPT without crashing the delivery.
func TestDANERequiredGroupFailureRecordedForTLSRPT(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(reqPolicy(policy.Requirement{Level: policy.DANEOnly, Source: policy.SourceStatic}), srv)
	store := &tlsrpt.FileStore{Dir: t.TempDir()}
	c.TLSRPT = store
	var res *transport.Result
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Deliver panicked: %v", p)
			}
		}()
		res = deliver(t, c, envelope("user@example.test"))
	}()
	if r := res.Recipients[0]; r.Status == transport.Delivered || r.TLSFailure != policy.FailureDANERequired {
		t.Errorf("dane-only without records: %v %q %v", r.Status, r.TLSFailure, r.Reply)
	}
	var got []tlsrpt.Result
	now := time.Now()
	if err := store.Results(context.Background(), now.Add(-time.Hour), now.Add(time.Hour), func(r tlsrpt.Result) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].PolicyType != tlsrpt.PolicyTLSA || got[0].ResultType != policy.FailureDANERequired {
		t.Errorf("TLS-RPT results = %+v, want one tlsa/dane-required", got)
	}
	if len(srv.Messages()) != 0 {
		t.Errorf("delivered")
	}
}

// "TLS-Required: No" is the sender's request to ignore recipient-side
// policies (RFC 8689 §4.2.2: MTA-STS, DANE). It must not lower what the local
// administrator configured for the destination (a static table entry, a
// route, an override): the header is written by whoever sends the message,
// and an on-path attacker who strips STARTTLS would then read it.
func TestTLSRequiredNoKeepsLocalPolicy(t *testing.T) {
	plain := transporttest.NewPlainServer(t)
	e := newEnv(t)
	e.single(plain.Addr)
	for _, src := range []policy.Source{policy.SourceStatic, policy.SourceRoute, policy.SourceOverride} {
		env := envelope("user@example.test")
		env.TLSRequiredNo = true
		res := deliver(t, e.connector(reqPolicy(policy.Requirement{Level: policy.Encrypt, Source: src}), nil), env)
		r := res.Recipients[0]
		if r.Status == transport.Delivered || !errors.Is(r.Reply, transport.ErrSTARTTLSNotOffered) {
			t.Errorf("%s encrypt + TLS-Required: No: %v %v, want STARTTLS still required", src, r.Status, r.Reply)
		}
	}
	assertNoPlaintextTransaction(t, "plaintext server", plain.Seen())
	// A published (recipient-side) policy is relaxed as the RFC asks.
	env := envelope("user@example.test")
	env.TLSRequiredNo = true
	res := deliver(t, e.connector(reqPolicy(policy.Requirement{Level: policy.Verify, Source: policy.SourceMTASTS,
		MXPatterns: []string{"mx.example.test"}}), nil), env)
	wantDelivered(t, res.Recipients[0])
}

// The attacker answers STARTTLS with 220 and a forged plaintext reply:
// in a later segment (not already buffered with the 220, so the handshake
// reads it as a TLS record and fails), or, from a server that offers
// PIPELINING and CHUNKING, in the same segment (smtpclient's injection
// check). Either way nothing of the transaction is written: no MAIL, RCPT,
// BDAT or body; nothing is pipelined past STARTTLS (RFC 2920 §3.1).
func TestConnectorSTARTTLSInjection(t *testing.T) {
	for _, tc := range []struct {
		name, ehlo, injected string
		later                bool
	}{
		{"later segment", "250-raw\r\n250 STARTTLS\r\n", "250-injected\r\n250 STARTTLS\r\n250 OK\r\n354 go\r\n", true},
		{"pipelining server, same segment", "250-raw\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n",
			"250-injected\r\n250 PIPELINING\r\n250 OK\r\n250 OK\r\n250 OK\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen bytes.Buffer
			addr := rawServer(t, func(c net.Conn, r *bufio.Reader) {
				c.Write([]byte("220 raw ESMTP\r\n"))
				r.ReadString('\n')
				c.Write([]byte(tc.ehlo))
				r.ReadString('\n')
				if tc.later {
					c.Write([]byte("220 go ahead\r\n"))
					time.Sleep(50 * time.Millisecond)
					c.Write([]byte(tc.injected))
				} else {
					c.Write([]byte("220 go ahead\r\n" + tc.injected))
				}
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				b, _ := io.ReadAll(r)
				mu.Lock()
				seen.Write(b)
				mu.Unlock()
			})
			e := newEnv(t)
			e.single(addr)
			res := deliver(t, e.connector(fixed(policy.Encrypt), nil), envelope("user@example.test"))
			if r := res.Recipients[0]; r.Status != transport.Deferred || r.Reply == nil || r.Reply.EnhancedCode.String() != "4.7.5" {
				t.Errorf("got %v %v, want deferred 4.7.5", r.Status, r.Reply)
			}
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if transporttest.Contains(seen.Bytes(), "MAIL FROM", "RCPT TO", "BDAT", bodyMarker) {
				t.Errorf("transaction after an injected reply:\n%s", seen.Bytes())
			}
		})
	}
}

// A peer that trickles a reply one byte at a time never resets the step's
// timeout: the deadline is absolute, so the attempt ends on time.
func TestSlowlorisPeerTimesOut(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		for _, b := range []byte(strings.Repeat("220-slow\r\n", 1000)) {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	e := newEnv(t)
	e.single(addr)
	c := e.connector(fixed(policy.Encrypt), nil)
	c.Timeouts.Greeting = 500 * time.Millisecond
	start := time.Now()
	res := deliver(t, c, envelope("user@example.test"))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("trickling peer held the attempt for %v", d)
	}
	if r := res.Recipients[0]; r.Status != transport.Deferred || r.Reply == nil || !r.Reply.Temporary() {
		t.Errorf("got %v %v, want deferred", r.Status, r.Reply)
	}
}

// A session ticket obtained under Encrypt from a server whose certificate is
// not trusted is never a way around verification at Verify: the
// resumption's VerifyConnection sees the original certificate and refuses it.
func TestResumedSessionFromWeakerPolicyIsReverified(t *testing.T) {
	srv := transporttest.NewUntrustedServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	level := policy.Encrypt
	c := e.connector(policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: level, Source: policy.SourceStatic}, nil
	}), srv)
	wantDelivered(t, deliver(t, c, envelope("user@example.test")).Recipients[0])
	second := deliver(t, c, envelope("user@example.test")).Recipients[0]
	wantDelivered(t, second)
	if second.TLS == nil || !second.TLS.Resumed {
		t.Fatalf("second Encrypt delivery did not resume (TLS %+v): the test would prove nothing", second.TLS)
	}
	level = policy.Verify
	r := deliver(t, c, envelope("user@example.test")).Recipients[0]
	wantTLSFailure(t, r, transport.Deferred, "4.7.5", transport.ErrCertificate, policy.FailureCertificateNotTrusted)
	if len(srv.Messages()) != 2 {
		t.Errorf("messages = %d, want 2 (none under Verify)", len(srv.Messages()))
	}
}

// Two routes to the same next hop with different client certificates (two
// tenants of one relay, mutual TLS to one partner gateway) must not share
// TLS sessions: a resumed session carries the identity of the certificate
// it was opened with, so route B's mail would reach the partner
// authenticated as route A, and mail without a route as either.
func TestSessionCacheSeparatesClientIdentities(t *testing.T) {
	clientCA, err := transporttest.NewCA("client CA")
	if err != nil {
		t.Fatal(err)
	}
	certA := clientCA.MustIssue(transporttest.LeafOptions{CommonName: "tenant-a", DNSNames: []string{"a.example.org"}, Client: true})
	certB := clientCA.MustIssue(transporttest.LeafOptions{CommonName: "tenant-b", DNSNames: []string{"b.example.org"}, Client: true})
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, ClientCAs: clientCA.Pool})
	e := newEnv(t)
	e.mx("a.test", "mx.example.test")
	e.mx("b.test", "mx.example.test")
	e.mx("c.test", "mx.example.test")
	e.host("mx.example.test", "192.0.2.10", srv.Addr)
	c := e.connector(fixed(policy.Verify), srv)
	c.Routes = []transport.Route{
		{Domain: "a.test", ClientCertificate: &certA.TLS},
		{Domain: "b.test", ClientCertificate: &certB.TLS},
	}
	for _, rcpt := range []string{"u@a.test", "u@a.test", "u@b.test", "u@c.test"} {
		wantDelivered(t, deliver(t, c, envelope(rcpt)).Recipients[0])
	}
	msgs := srv.Messages()
	if len(msgs) != 4 {
		t.Fatalf("messages = %d", len(msgs))
	}
	if !msgs[1].TLS.DidResume {
		t.Fatalf("the second message to a.test did not resume; the test would prove nothing")
	}
	ident := func(m *transporttest.Message) string {
		if m.TLS == nil || len(m.TLS.PeerCertificates) == 0 {
			return ""
		}
		return m.TLS.PeerCertificates[0].Subject.CommonName
	}
	for i, want := range []string{"tenant-a", "tenant-a", "tenant-b", ""} {
		if got := ident(msgs[i]); got != want {
			t.Errorf("message %d (%v) reached the server as client %q, want %q (resumed %v)",
				i, msgs[i].Envelope.Recipients, got, want, msgs[i].TLS.DidResume)
		}
	}
}

// A testing-mode policy over a dane-only floor (a hand-made Policy; Standard
// keeps dane-only instead) must not let delivery fall to unauthenticated
// TLS: without Connector.DANE no host can meet the floor.
func TestTestingPolicyOverDANEOnlyFloorFailsClosed(t *testing.T) {
	mitm := transporttest.NewUntrustedServer(t)
	e := newEnv(t)
	e.single(mitm.Addr)
	c := e.connector(reqPolicy(policy.Requirement{Level: policy.Verify, Mode: policy.Testing, Floor: policy.DANEOnly,
		Source: policy.SourceMTASTS, MXPatterns: []string{"mx.example.test"}}), nil)
	r := deliver(t, c, envelope("user@example.test")).Recipients[0]
	if r.Status == transport.Delivered || !errors.Is(r.Reply, transport.ErrDANE) {
		t.Errorf("testing policy over dane-only floor: %v %v, want fail closed with ErrDANE", r.Status, r.Reply)
	}
	if len(mitm.Messages()) != 0 {
		t.Errorf("delivered over unauthenticated TLS")
	}
}

// scriptedPeer is a raw SMTP peer: it greets, answers the first EHLO with
// ehlo, then hands over to after (with everything the client sent so far
// already recorded). Everything the client sends in plaintext is recorded.
type scriptedPeer struct {
	mu    sync.Mutex
	plain bytes.Buffer // bytes read before any TLS handshake
	conns int
}

func (p *scriptedPeer) record(b string) {
	p.mu.Lock()
	p.plain.WriteString(b)
	p.mu.Unlock()
}

func (p *scriptedPeer) wire() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.plain.Bytes())
}

// readLine reads one command line and records it.
func (p *scriptedPeer) readLine(r *bufio.Reader) (string, error) {
	l, err := r.ReadString('\n')
	p.record(l)
	return l, err
}

// drain records whatever else the client sends in plaintext, answering
// every line with reply, until the client closes or 2s pass.
func (p *scriptedPeer) drain(c net.Conn, r *bufio.Reader, reply string) {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		l, err := p.readLine(r)
		if err != nil {
			return
		}
		if strings.HasPrefix(strings.ToUpper(l), "QUIT") {
			c.Write([]byte("221 bye\r\n"))
			return
		}
		c.Write([]byte(reply))
	}
}

func (p *scriptedPeer) serve(t *testing.T, ehlo string, after func(p *scriptedPeer, c net.Conn, r *bufio.Reader)) string {
	return rawServer(t, func(c net.Conn, r *bufio.Reader) {
		p.mu.Lock()
		p.conns++
		p.mu.Unlock()
		c.Write([]byte("220 peer.example.test ESMTP\r\n"))
		if _, err := p.readLine(r); err != nil {
			return
		}
		c.Write([]byte(ehlo))
		after(p, c, r)
	})
}

// How STARTTLS is advertised is attacker-controlled text. Every spelling
// RFC 5321 allows (case-insensitive keyword, trailing space, last line)
// makes the client try STARTTLS; the greeting line is not an extension;
// HELO fallback (EHLO refused with 502) has no extensions at all. Whatever
// the spelling, under Encrypt no envelope or body byte crosses in plaintext.
func TestSTARTTLSAdvertisementSpellings(t *testing.T) {
	tests := []struct {
		name       string
		ehlo       string
		wantTried  bool   // the client sends STARTTLS
		wantEnhanc string // the recipient's enhanced code
	}{
		{"lower case", "250-peer\r\n250-starttls\r\n250 SIZE 1000\r\n", true, "4.7.5"},
		{"trailing space", "250-peer\r\n250-STARTTLS \r\n250 8BITMIME\r\n", true, "4.7.5"},
		{"last line", "250-peer\r\n250-PIPELINING\r\n250 STARTTLS\r\n", true, "4.7.5"},
		{"only in the greeting line", "250 STARTTLS\r\n", false, "4.7.4"},
		{"EHLO refused, HELO fallback", "502 5.5.1 no EHLO\r\n", false, "4.7.4"},
		{"STARTTLS refused 454", "250-peer\r\n250 STARTTLS\r\n", true, "4.7.4"},
		{"STARTTLS refused 554", "250-peer\r\n250 STARTTLS\r\n", true, "4.7.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &scriptedPeer{}
			var tried bool
			addr := p.serve(t, tt.ehlo, func(p *scriptedPeer, c net.Conn, r *bufio.Reader) {
				l, err := p.readLine(r)
				if err != nil {
					return
				}
				switch {
				case strings.HasPrefix(l, "HELO "):
					c.Write([]byte("250 peer\r\n"))
					p.drain(c, r, "250 OK\r\n")
				case strings.HasPrefix(l, "STARTTLS"):
					p.mu.Lock()
					tried = true
					p.mu.Unlock()
					switch {
					case strings.Contains(tt.name, "454"):
						c.Write([]byte("454 4.7.0 TLS not available\r\n"))
						p.drain(c, r, "250 OK\r\n")
					case strings.Contains(tt.name, "554"):
						c.Write([]byte("554 5.7.0 no\r\n"))
						p.drain(c, r, "250 OK\r\n")
					default:
						// Accept, then answer the ClientHello with plaintext:
						// the handshake fails.
						c.Write([]byte("220 go ahead\r\n"))
						r.ReadByte()
						c.Write([]byte("250 OK\r\n"))
					}
				default:
					c.Write([]byte("250 OK\r\n"))
					p.drain(c, r, "250 OK\r\n")
				}
			})
			e := newEnv(t)
			e.single(addr)
			r := deliver(t, e.connector(fixed(policy.Encrypt), nil), envelope("user@example.test")).Recipients[0]
			if r.Status != transport.Deferred || r.Reply == nil || r.Reply.EnhancedCode.String() != tt.wantEnhanc {
				t.Errorf("got %v %v, want deferred %s", r.Status, r.Reply, tt.wantEnhanc)
			}
			time.Sleep(50 * time.Millisecond)
			p.mu.Lock()
			gotTried := tried
			p.mu.Unlock()
			if gotTried != tt.wantTried {
				t.Errorf("client sent STARTTLS = %v, want %v", gotTried, tt.wantTried)
			}
			assertNoPlaintextTransaction(t, tt.name, p.wire())
		})
	}
}

// A server that completes the handshake and then answers the second EHLO
// with 4xx (or drops the connection) ends the attempt; the client must not
// "retry" without TLS, whatever the level, including May once TLS was up.
func TestFailureAfterHandshakeNeverRetriesInPlaintext(t *testing.T) {
	ca, err := transporttest.NewCA("peer CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mx.example.test"}})
	for _, second := range []string{"421 4.3.0 try later\r\n", "454 4.7.0 busy\r\n", ""} {
		for _, lvl := range []policy.Level{policy.May, policy.Encrypt, policy.Verify} {
			t.Run(fmt.Sprintf("%s/%q", lvl, second), func(t *testing.T) {
				p := &scriptedPeer{}
				addr := p.serve(t, "250-peer\r\n250 STARTTLS\r\n", func(p *scriptedPeer, c net.Conn, r *bufio.Reader) {
					l, err := p.readLine(r)
					if err != nil || !strings.HasPrefix(l, "STARTTLS") {
						p.drain(c, r, "250 OK\r\n")
						return
					}
					c.Write([]byte("220 go ahead\r\n"))
					tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
					tc.SetDeadline(time.Now().Add(5 * time.Second))
					if err := tc.Handshake(); err != nil {
						return
					}
					tr := bufio.NewReader(tc)
					if _, err := tr.ReadString('\n'); err != nil { // EHLO
						return
					}
					if second == "" {
						return // drop the connection
					}
					tc.Write([]byte(second))
					tr.ReadString('\n')
				})
				e := newEnv(t)
				e.single(addr)
				c := e.connector(fixed(lvl), nil)
				c.RootCAs = ca.Pool
				r := deliver(t, c, envelope("user@example.test")).Recipients[0]
				if r.Status != transport.Deferred {
					t.Errorf("got %v %v, want deferred", r.Status, r.Reply)
				}
				time.Sleep(50 * time.Millisecond)
				p.mu.Lock()
				conns := p.conns
				p.mu.Unlock()
				if conns != 1 {
					t.Errorf("connections = %d, want 1 (no plaintext retry)", conns)
				}
				assertNoPlaintextTransaction(t, "peer", p.wire())
			})
		}
	}
}

// tlsPeer offers STARTTLS, completes the handshake with cert and ends the
// session with 421 after the second EHLO: the result shows whether the
// certificate passed the level's check.
func tlsPeer(t *testing.T, cert tls.Certificate) string {
	p := &scriptedPeer{}
	return p.serve(t, "250-peer\r\n250 STARTTLS\r\n", func(p *scriptedPeer, c net.Conn, r *bufio.Reader) {
		if l, err := p.readLine(r); err != nil || !strings.HasPrefix(l, "STARTTLS") {
			return
		}
		c.Write([]byte("220 go ahead\r\n"))
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		tr := bufio.NewReader(tc)
		tr.ReadString('\n')
		tc.Write([]byte("421 4.3.0 test ends here\r\n"))
		tr.ReadString('\n')
	})
}

// Name matching at Verify and Secure against hostile certificates, all
// issued by a trusted CA: wildcards cover exactly one label and never the
// apex, "match=.domain" means subdomains only, a suffix without a dot is
// not a subdomain, an IP next hop needs an IP SAN, and an expired
// intermediate is "certificate-expired" even when the leaf is current.
func TestCertificateNameEdgeCases(t *testing.T) {
	ca, err := transporttest.NewCA("trusted")
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(o transporttest.LeafOptions) tls.Certificate { return ca.MustIssue(o).TLS }
	inter := ca.MustIssue(transporttest.LeafOptions{CommonName: "expired intermediate", IsCA: true,
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	interCA, err := inter.AsCA()
	if err != nil {
		t.Fatal(err)
	}
	viaExpired := interCA.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mx.example.test", "example.test"}}).TLS
	loop := []net.IP{net.ParseIP("127.0.0.1")}
	tests := []struct {
		name  string
		level policy.Level
		match []string
		cert  tls.Certificate
		hop   bool // deliver to the peer as a fixed next hop [127.0.0.1]:port
		ft    policy.FailureType
	}{
		{"secure: wildcard under the domain", policy.Secure, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"*.example.test"}}), false, ""},
		{"secure: exact match= is not covered by a wildcard", policy.Secure, []string{"example.test"}, leaf(transporttest.LeafOptions{DNSNames: []string{"*.example.test"}}), false, policy.FailureCertificateHostMismatch},
		{"secure: .domain is subdomains only", policy.Secure, []string{".example.test"}, leaf(transporttest.LeafOptions{DNSNames: []string{"example.test"}}), false, policy.FailureCertificateHostMismatch},
		{"secure: suffix without a dot", policy.Secure, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"evilexample.test"}}), false, policy.FailureCertificateHostMismatch},
		{"secure: domain as a label of another name", policy.Secure, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"example.test.evil.test"}}), false, policy.FailureCertificateHostMismatch},
		{"secure: the MX name is not enough", policy.Secure, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"mx.example.test.attacker.test"}}), false, policy.FailureCertificateHostMismatch},
		{"verify: wildcard for the MX", policy.Verify, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"*.example.test"}}), false, ""},
		{"verify: wildcard one label too deep", policy.Verify, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"*.mx.example.test"}}), false, policy.FailureCertificateHostMismatch},
		{"verify: wildcard not leftmost", policy.Verify, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"mx.*.test"}}), false, policy.FailureCertificateHostMismatch},
		{"verify: CN only, no SAN", policy.Verify, nil, leaf(transporttest.LeafOptions{CommonName: "mx.example.test"}), false, policy.FailureCertificateHostMismatch},
		{"verify: IP next hop with IP SAN", policy.Verify, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"gw.example.test"}, IPs: loop}), true, ""},
		{"verify: IP next hop, IP only as a DNS name", policy.Verify, nil, leaf(transporttest.LeafOptions{DNSNames: []string{"127.0.0.1"}}), true, policy.FailureCertificateHostMismatch},
		{"verify: expired intermediate", policy.Verify, nil, viaExpired, false, policy.FailureCertificateExpired},
		{"secure: expired intermediate", policy.Secure, nil, viaExpired, false, policy.FailureCertificateExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tlsPeer(t, tt.cert)
			e := newEnv(t)
			e.single(addr)
			c := e.connector(reqPolicy(policy.Requirement{Level: tt.level, Match: tt.match}), nil)
			c.RootCAs = ca.Pool
			if tt.hop {
				c.Routes = []transport.Route{{Domain: "example.test", NextHop: addr}}
			}
			r := deliver(t, c, envelope("user@example.test")).Recipients[0]
			if r.Status == transport.Delivered {
				t.Fatalf("delivered to a peer that answers 421")
			}
			if r.TLSFailure != tt.ft {
				t.Errorf("TLS failure %q, want %q (%v)", r.TLSFailure, tt.ft, r.Reply)
			}
			if tt.ft == "" {
				if r.TLS == nil || !r.TLS.Verified || r.Reply == nil || r.Reply.Code != 421 {
					t.Errorf("want a verified session ended by the peer's 421, got TLS %+v reply %v", r.TLS, r.Reply)
				}
			} else if !errors.Is(r.Reply, transport.ErrCertificate) || r.Reply.EnhancedCode.String() != "4.7.5" {
				t.Errorf("reply %v, want 4.7.5 wrapping ErrCertificate", r.Reply)
			}
		})
	}
}

// An active attacker in front of a smarthost answers STARTTLS with a
// certificate of its own. At May or Encrypt the handshake succeeds, and
// credentials sent now go to the attacker, who decrypts them as easily as
// plaintext. AUTH needs a verified certificate unless the route opts out.
func TestAuthNeedsVerifiedTLS(t *testing.T) {
	ca, err := transporttest.NewCA("attacker's own CA")
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"smtp.relay.test"}}).TLS
	for _, tt := range []struct {
		level    policy.Level
		insecure bool
		wantAuth bool
	}{
		{policy.May, false, false},
		{policy.Encrypt, false, false},
		{policy.Encrypt, true, true},
	} {
		t.Run(fmt.Sprintf("%s/insecure=%v", tt.level, tt.insecure), func(t *testing.T) {
			var mu sync.Mutex
			var decrypted bytes.Buffer
			p := &scriptedPeer{}
			addr := p.serve(t, "250-smtp.relay.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n", func(p *scriptedPeer, c net.Conn, r *bufio.Reader) {
				if l, err := p.readLine(r); err != nil || !strings.HasPrefix(l, "STARTTLS") {
					return
				}
				c.Write([]byte("220 go ahead\r\n"))
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				tr := bufio.NewReader(tc)
				for {
					l, err := tr.ReadString('\n')
					mu.Lock()
					decrypted.WriteString(l)
					mu.Unlock()
					if err != nil {
						return
					}
					switch {
					case strings.HasPrefix(l, "EHLO"):
						tc.Write([]byte("250-smtp.relay.test\r\n250 AUTH PLAIN\r\n"))
					case strings.HasPrefix(l, "AUTH"):
						tc.Write([]byte("235 2.7.0 thanks for the password\r\n"))
					case strings.HasPrefix(l, "QUIT"):
						tc.Write([]byte("221 bye\r\n"))
						return
					default:
						tc.Write([]byte("421 4.3.0 enough\r\n"))
						return
					}
				}
			})
			e := newEnv(t)
			c := e.connector(nil, nil)
			c.RootCAs = x509.NewCertPool()
			c.Routes = []transport.Route{{Domain: "*", NextHop: addr, Policy: policy.Fixed{Level: tt.level},
				Auth: &transport.Credentials{Username: "app", Password: "s3cret"}, InsecureAuthUnverifiedTLS: tt.insecure}}
			r := deliver(t, c, envelope("a@one.test")).Recipients[0]
			if r.Status == transport.Delivered {
				t.Fatalf("delivered to a peer that answers 421")
			}
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			gotAuth := strings.Contains(decrypted.String(), "AUTH PLAIN")
			mu.Unlock()
			if gotAuth != tt.wantAuth {
				t.Errorf("peer with an unverified certificate received AUTH = %v, want %v:\n%s", gotAuth, tt.wantAuth, decrypted.String())
			}
			if !tt.wantAuth && !errors.Is(r.Reply, transport.ErrAuthUnverifiedTLS) {
				t.Errorf("reply %v, want ErrAuthUnverifiedTLS", r.Reply)
			}
			assertNoPlaintextTransaction(t, "peer", p.wire())
		})
	}
}

// A pooled connection opened under a weaker policy is never reused after
// the policy for the destination became stricter (an MTA-STS policy that
// moved to enforce, a new static entry): the stricter message opens a new
// connection and checks the certificate, which the attacker's fails.
func TestPoolNotReusedAfterPolicyChange(t *testing.T) {
	srv := transporttest.NewUntrustedServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	var mu sync.Mutex
	req := policy.Requirement{Level: policy.Encrypt, Source: policy.SourceStatic}
	set := func(r policy.Requirement) { mu.Lock(); req = r; mu.Unlock() }
	c := e.connector(policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		mu.Lock()
		defer mu.Unlock()
		r := req
		r.Domain = d
		return r, nil
	}), srv)
	c.Pool = transport.PoolConfig{MaxIdle: 4, IdleTimeout: time.Minute}
	defer c.Close()
	wantDelivered(t, deliver(t, c, envelope("a@example.test")).Recipients[0])
	wantDelivered(t, deliver(t, c, envelope("b@example.test")).Recipients[0])
	if n := srv.Connections(); n != 1 {
		t.Fatalf("connections = %d, want 1: pooling is not in effect and the test would prove nothing", n)
	}
	for _, r := range []policy.Requirement{
		{Level: policy.Verify, Source: policy.SourceStatic},
		{Level: policy.Verify, Mode: policy.Enforce, Source: policy.SourceMTASTS, MXPatterns: []string{"mx.example.test"}},
		{Level: policy.Secure, Source: policy.SourceStatic},
		{Level: policy.Encrypt, MinVersion: tls.VersionTLS13 + 1, Source: policy.SourceStatic}, // unmeetable minimum
	} {
		set(r)
		before := srv.Connections()
		got := deliver(t, c, envelope("c@example.test")).Recipients[0]
		if got.Status == transport.Delivered {
			t.Errorf("%s: delivered over the connection pooled under encrypt", r)
		}
		if srv.Connections() != before+1 {
			t.Errorf("%s: connections %d → %d, want a new connection", r, before, srv.Connections())
		}
	}
	if n := len(srv.Messages()); n != 2 {
		t.Errorf("messages = %d, want 2", n)
	}
}

// A requirement whose level this code does not know (a configuration or
// programming error on this side) defers the message as 4.3.5 without
// connecting, and is no TLS failure of the destination's: nothing goes
// to TLS-RPT.
func TestUnknownLevelDefersWithoutTLSReport(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(reqPolicy(policy.Requirement{Level: policy.Level(99), Source: policy.SourceStatic}), srv)
	store := &tlsrpt.FileStore{Dir: t.TempDir()}
	c.TLSRPT = store
	res := deliver(t, c, envelope("user@example.test"))
	r := res.Recipients[0]
	if r.Status != transport.Deferred || r.Reply.Code != 451 || r.Reply.EnhancedCode.String() != "4.3.5" ||
		!errors.Is(r.Reply, transport.ErrPolicyLookup) || r.TLSFailure != policy.FailureNone {
		t.Errorf("unknown level: %v %v %q", r.Status, r.Reply, r.TLSFailure)
	}
	if len(e.dialer.Dialed()) != 0 || len(srv.Messages()) != 0 {
		t.Errorf("dialled %v, delivered %d", e.dialer.Dialed(), len(srv.Messages()))
	}
	now := time.Now()
	if err := store.Results(context.Background(), now.Add(-time.Hour), now.Add(time.Hour), func(r tlsrpt.Result) error {
		t.Errorf("TLS-RPT result recorded: %+v", r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
