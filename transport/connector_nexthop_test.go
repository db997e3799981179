package transport_test

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// hopWorld is a Connector whose Policy is a static table and whose routes
// send recipient domains to fixed next hops on loopback.
type hopWorld struct {
	t  *testing.T
	ca *transporttest.CA
	e  *env
}

func newHopWorld(t *testing.T) *hopWorld {
	ca, err := transporttest.NewCA("next hop CA")
	if err != nil {
		t.Fatal(err)
	}
	return &hopWorld{t: t, ca: ca, e: newEnv(t)}
}

// server starts a TLS server for host, at most TLS maxVersion (0: any),
// that counts the RCPT commands it is sent.
func (w *hopWorld) server(host string, maxVersion uint16, rcpts *atomic.Int32) *transporttest.Server {
	srv := transporttest.NewServer(w.t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: w.ca, Hostname: host,
		MaxVersion: maxVersion, Rcpt: func(string) error { rcpts.Add(1); return nil }})
	w.e.host(host, "127.0.0.1", "")
	return srv
}

// connector has the table as Policy and one route per "domain=server".
func (w *hopWorld) connector(table string, routes map[string]*transporttest.Server) *transport.Connector {
	pol, err := policy.ParseTable(strings.NewReader(table), "tls_policy")
	if err != nil {
		w.t.Fatal(err)
	}
	c := w.e.connector(pol, nil)
	c.RootCAs = w.ca.Pool
	for d, srv := range routes {
		c.Routes = append(c.Routes, transport.Route{Domain: d, NextHop: fmt.Sprintf("[%s]:%d", srv.Hostname, srv.Port)})
	}
	return c
}

// TestNextHopKeepsDomainEntry: a domain routed to a fixed next hop keeps
// its table entry (policy.ForNextHop). "partner.example verify protocols=>=TLSv1.3 on-failure=bounce"
// with partner.example routed to a TLS 1.2-only next hop: nothing of the
// transaction reaches it, and the recipient bounces at once (5.7.5).
func TestNextHopKeepsDomainEntry(t *testing.T) {
	w := newHopWorld(t)
	var rcpts atomic.Int32
	srv := w.server("mx.partner.example", tls.VersionTLS12, &rcpts)
	c := w.connector("partner.example verify protocols=>=TLSv1.3 on-failure=bounce\n",
		map[string]*transporttest.Server{"partner.example": srv})
	r := deliver(t, c, envelope("bob@partner.example")).Recipients[0]
	wantTLSFailure(t, r, transport.Failed, "5.7.5", transport.ErrTLSVersion, policy.FailureValidation)
	if r.Reply.Code != 554 {
		t.Errorf("reply %v, want 554 (on-failure=bounce)", r.Reply)
	}
	req := r.Requirement
	if req.Level != policy.Verify || req.MinVersion != tls.VersionTLS13 || req.OnFailure != policy.Bounce || req.Source != policy.SourceStatic ||
		!strings.Contains(req.Reason, "entry partner.example") {
		t.Errorf("requirement %v", req)
	}
	if n := len(srv.Messages()); n != 0 || rcpts.Load() != 0 {
		t.Errorf("TLS 1.2 next hop saw %d RCPT and %d messages", rcpts.Load(), n)
	}
	assertNoPlaintextTransaction(t, "next hop", srv.Seen())
}

// The table's "*" entry covers routed domains that have no entry of their
// own; every transaction is held to its own recipients' requirement: one
// message to a smarthost for a strict and a lax domain is split, the lax
// recipient delivered, the strict one refused.
func TestNextHopStarEntry(t *testing.T) {
	w := newHopWorld(t)
	var rcpts12, rcpts13 atomic.Int32
	old := w.server("smtp.old.example", tls.VersionTLS12, &rcpts12)
	modern := w.server("smtp.new.example", 0, &rcpts13)
	c := w.connector("* verify protocols=>=TLSv1.3\n", map[string]*transporttest.Server{
		"other.example": old, "new.example": modern})
	res := deliver(t, c, envelope("a@other.example", "b@new.example")).Recipients
	wantTLSFailure(t, res[0], transport.Deferred, "4.7.5", transport.ErrTLSVersion, policy.FailureValidation)
	if req := res[0].Requirement; req.MinVersion != tls.VersionTLS13 || req.Source != policy.SourceDefault || !strings.Contains(req.Reason, "entry *") {
		t.Errorf("requirement %v", req)
	}
	if rcpts12.Load() != 0 || len(old.Messages()) != 0 {
		t.Errorf("TLS 1.2 next hop saw a transaction")
	}
	wantDelivered(t, res[1])
	if res[1].TLS == nil || res[1].TLS.Version != tls.VersionTLS13 || !res[1].TLS.Verified {
		t.Errorf("TLS %+v", res[1].TLS)
	}

	// One smarthost for both domains: a strict entry for one of them.
	var rcpts atomic.Int32
	smart := w.server("smarthost.example", tls.VersionTLS12, &rcpts)
	c = w.connector("strict.example verify protocols=>=TLSv1.3 on-failure=bounce\n* encrypt\n",
		map[string]*transporttest.Server{"*": smart})
	res = deliver(t, c, envelope("a@strict.example", "b@lax.example")).Recipients
	wantTLSFailure(t, res[0], transport.Failed, "5.7.5", transport.ErrTLSVersion, policy.FailureValidation)
	wantDelivered(t, res[1])
	if res[1].Requirement.Level != policy.Encrypt {
		t.Errorf("lax.example requirement %v", res[1].Requirement)
	}
	msgs := smart.Messages()
	if len(msgs) != 1 || len(msgs[0].Envelope.Recipients) != 1 || msgs[0].Envelope.Recipients[0].Address != "b@lax.example" || rcpts.Load() != 1 {
		t.Errorf("smarthost got %d messages, %d RCPT", len(msgs), rcpts.Load())
	}
}

// "secure" with match= names on the recipient domain holds for its next
// hop: a certificate for the next hop's own name is not enough.
func TestNextHopSecureMatch(t *testing.T) {
	w := newHopWorld(t)
	var rcpts atomic.Int32
	srv := w.server("gw.partner.example", 0, &rcpts)
	routes := map[string]*transporttest.Server{"partner.example": srv}
	c := w.connector("partner.example secure match=partner.example\n", routes)
	r := deliver(t, c, envelope("bob@partner.example")).Recipients[0]
	wantTLSFailure(t, r, transport.Deferred, "4.7.5", transport.ErrCertificate, policy.FailureCertificateHostMismatch)
	if r.Requirement.Level != policy.Secure || strings.Join(r.Requirement.Match, ":") != "partner.example" {
		t.Errorf("requirement %v", r.Requirement)
	}
	if rcpts.Load() != 0 {
		t.Errorf("next hop saw RCPT")
	}
	c = w.connector("partner.example secure match=.partner.example\n", routes)
	r = deliver(t, c, envelope("bob@partner.example")).Recipients[0]
	wantDelivered(t, r)
	if r.Requirement.Level != policy.Secure || r.Requirement.Source != policy.SourceStatic || !r.TLS.Verified {
		t.Errorf("requirement %v, TLS %+v", r.Requirement, r.TLS)
	}
}
