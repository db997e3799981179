package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

func reqPolicy(r policy.Requirement) policy.Policy {
	return policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		r.Domain = d
		if r.Source == "" {
			r.Source = policy.SourceStatic
		}
		return r, nil
	})
}

func TestREQUIRETLS(t *testing.T) {
	withExt := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, RequireTLS: true})
	withoutExt := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: withExt.CA})
	authVerify := reqPolicy(policy.Requirement{Level: policy.Verify, MXAuthenticated: true, Source: policy.SourceMTASTS})
	rtEnv := func() *transport.Envelope { e := envelope("user@example.test"); e.RequireTLS = true; return e }

	t.Run("delivered with REQUIRETLS on MAIL FROM", func(t *testing.T) {
		e := newEnv(t)
		e.single(withExt.Addr)
		res := deliver(t, e.connector(authVerify, withExt), rtEnv())
		wantDelivered(t, res.Recipients[0])
		m := withExt.Messages()
		if len(m) != 1 || !m[0].Envelope.RequireTLS {
			t.Errorf("server did not receive REQUIRETLS: %+v", m)
		}
	})
	t.Run("secure with authenticated MX", func(t *testing.T) {
		e := newEnv(t)
		e.single(withExt.Addr)
		res := deliver(t, e.connector(reqPolicy(policy.Requirement{Level: policy.Secure, MXAuthenticated: true}), withExt), rtEnv())
		wantDelivered(t, res.Recipients[0])
	})
	refused := func(t *testing.T, pol policy.Policy, srv *transporttest.Server, wantDial bool) {
		t.Helper()
		e := newEnv(t)
		e.single(srv.Addr)
		before := len(srv.Messages())
		res := deliver(t, e.connector(pol, srv), rtEnv())
		r := res.Recipients[0]
		if r.Status != transport.Failed || r.Reply.Code != 550 || r.Reply.EnhancedCode.String() != "5.7.30" || !errors.Is(r.Reply, transport.ErrRequireTLS) || !r.Reply.Local {
			t.Errorf("got %v %v", r.Status, r.Reply)
		}
		if len(srv.Messages()) != before {
			t.Errorf("message delivered")
		}
		if dialled := len(e.dialer.Dialed()) > 0; dialled != wantDial {
			t.Errorf("dialled = %v, want %v", dialled, wantDial)
		}
	}
	t.Run("verify without authenticated MX", func(t *testing.T) { refused(t, fixed(policy.Verify), withExt, false) })
	// RFC 8689 §4.2.1 wants the MX lookup authenticated whatever the
	// certificate check; Secure does not stand in for it.
	t.Run("secure without authenticated MX", func(t *testing.T) { refused(t, fixed(policy.Secure), withExt, false) })
	t.Run("encrypt", func(t *testing.T) {
		refused(t, reqPolicy(policy.Requirement{Level: policy.Encrypt, MXAuthenticated: true}), withExt, false)
	})
	t.Run("testing mode", func(t *testing.T) {
		refused(t, reqPolicy(policy.Requirement{Level: policy.Verify, MXAuthenticated: true, Mode: policy.Testing}), withExt, false)
	})
	t.Run("next hop lacks REQUIRETLS", func(t *testing.T) { refused(t, authVerify, withoutExt, true) })
}

// RFC 8689 §4.2.2: "TLS-Required: No" relaxes certificate checks.
func TestTLSRequiredNo(t *testing.T) {
	srv := transporttest.NewWrongNameServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	env := envelope("user@example.test")
	env.TLSRequiredNo = true
	res := deliver(t, e.connector(fixed(policy.Secure), srv), env)
	r := res.Recipients[0]
	wantDelivered(t, r)
	if r.TLS == nil || r.TLS.Verified {
		t.Errorf("TLS = %+v, want TLS attempted and unverified", r.TLS)
	}
	// REQUIRETLS wins over the header.
	env.RequireTLS = true
	res = deliver(t, e.connector(reqPolicy(policy.Requirement{Level: policy.Secure, MXAuthenticated: true}), srv), env)
	if r := res.Recipients[0]; r.Status == transport.Delivered || !errors.Is(r.Reply, transport.ErrCertificate) {
		t.Errorf("REQUIRETLS + TLS-Required: No: %v %v, want the certificate enforced", r.Status, r.Reply)
	}
	if len(srv.Messages()) != 1 {
		t.Errorf("messages = %d, want 1", len(srv.Messages()))
	}
}

func TestDSNParametersAndRelayed(t *testing.T) {
	mk := func() *transport.Envelope {
		env := envelope("a@example.test", "b@example.test")
		env.Recipients[0].Notify = ndr.NotifySuccess | ndr.NotifyFailure
		env.Recipients[0].ORCPT = "rfc822;orig+a@example.test"
		env.Return = ndr.ReturnHeaders
		env.EnvelopeID = "id=42 x"
		return env
	}
	dsn := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, DSN: true})
	e := newEnv(t)
	e.single(dsn.Addr)
	res := deliver(t, e.connector(fixed(policy.Verify), dsn), mk())
	for _, r := range res.Recipients {
		wantDelivered(t, r)
	}
	m := dsn.Messages()[0].Envelope
	if m.Return != ndr.ReturnHeaders || m.EnvelopeID != "id=42 x" {
		t.Errorf("RET/ENVID = %q %q", m.Return, m.EnvelopeID)
	}
	if got := m.Recipients[0]; got.Notify != ndr.NotifySuccess|ndr.NotifyFailure || !strings.EqualFold(got.ORCPT, "rfc822;orig+a@example.test") {
		t.Errorf("recipient params = %+v", got)
	}
	if m.Recipients[1].Notify != 0 || m.Recipients[1].ORCPT != "" {
		t.Errorf("second recipient got params %+v", m.Recipients[1])
	}

	plain := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: dsn.CA})
	e2 := newEnv(t)
	e2.single(plain.Addr)
	res = deliver(t, e2.connector(fixed(policy.Verify), plain), mk())
	if res.Recipients[0].Status != transport.Relayed || res.Recipients[1].Status != transport.Delivered {
		t.Errorf("without DSN: %v, %v; want relayed, delivered", res.Recipients[0].Status, res.Recipients[1].Status)
	}
	if w := plain.Seen(); transporttest.Contains(w, "NOTIFY=") {
		t.Errorf("NOTIFY sent to a server without DSN")
	}
}

func TestSMTPUTF8(t *testing.T) {
	utf := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, SMTPUTF8: true})
	plain := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: utf.CA})
	mk := func(rcpt string) *transport.Envelope { env := envelope(rcpt); env.SMTPUTF8 = true; return env }

	e := newEnv(t)
	e.single(utf.Addr)
	res := deliver(t, e.connector(fixed(policy.Verify), utf), mk("grüße@example.test"))
	wantDelivered(t, res.Recipients[0])
	if m := utf.Messages(); len(m) != 1 || !m[0].Envelope.SMTPUTF8 || m[0].Envelope.Recipients[0].Address != "grüße@example.test" {
		t.Errorf("server got %+v", m)
	}

	e2 := newEnv(t)
	e2.single(plain.Addr)
	for rcpt, want := range map[string]string{"grüße@example.test": "5.6.7", "ascii@example.test": "5.6.9"} {
		res = deliver(t, e2.connector(fixed(policy.Verify), plain), mk(rcpt))
		if r := res.Recipients[0]; r.Status != transport.Failed || r.Reply.EnhancedCode.String() != want {
			t.Errorf("%s to a server without SMTPUTF8: %v %v, want %s", rcpt, r.Status, r.Reply, want)
		}
	}
	if len(plain.Messages()) != 0 {
		t.Errorf("delivered without SMTPUTF8")
	}
}

func TestSmarthostRouteWithAuth(t *testing.T) {
	relay := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "smtp.relay.test",
		Auth: map[string]string{"app": "s3cret"}})
	e := newEnv(t)
	e.host("smtp.relay.test", "127.0.0.1", "") // next hops resolve by A record, never MX
	c := e.connector(nil, relay)
	c.Routes = []transport.Route{{
		Domain:  "*",
		NextHop: fmt.Sprintf("smtp.relay.test:%d", relay.Port),
		Policy:  policy.Fixed{Level: policy.Secure},
		Auth:    &transport.Credentials{Username: "app", Password: "s3cret"},
	}}
	res := deliver(t, c, envelope("a@one.test", "b@two.test"))
	for _, r := range res.Recipients {
		wantDelivered(t, r)
		if r.Requirement.Source != policy.SourceRoute || r.Requirement.Level != policy.Secure ||
			r.Requirement.Domain != fmt.Sprintf("[smtp.relay.test]:%d", relay.Port) {
			t.Errorf("requirement = %v", r.Requirement)
		}
	}
	msgs := relay.Messages()
	if len(msgs) != 1 || msgs[0].Envelope.AuthIdentity != "app" || len(msgs[0].Envelope.Recipients) != 2 {
		t.Fatalf("relay got %+v", msgs)
	}
	if transporttest.Contains(relay.Seen(), "AUTH PLAIN") {
		t.Errorf("AUTH in plaintext")
	}

	// Credentials are never sent without TLS, even where plaintext is allowed.
	plainRelay := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "smtp.relay.test", Auth: map[string]string{"app": "s3cret"}})
	c.Routes[0].NextHop = plainRelay.Addr
	c.Routes[0].Policy = policy.Fixed{Level: policy.May}
	res = deliver(t, c, envelope("a@one.test"))
	if r := res.Recipients[0]; r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrAuthWithoutTLS) || !r.Reply.Local {
		t.Errorf("auth without TLS: %v %v (Local must be set: the Connector refused)", r.Status, r.Reply)
	}
	if transporttest.Contains(plainRelay.Seen(), "AUTH", "czNjcmV0", "MAIL FROM") {
		t.Errorf("credentials or transaction sent in plaintext:\n%s", plainRelay.Seen())
	}
}

func TestRouteClientCertificate(t *testing.T) {
	clientCA, err := transporttest.NewCA("client CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf := clientCA.MustIssue(transporttest.LeafOptions{DNSNames: []string{clientName}, Client: true})
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, ClientCAs: clientCA.Pool})
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(nil, srv)
	c.Routes = []transport.Route{{Domain: ".test", ClientCertificate: &leaf.TLS}, {Domain: "example.test", ClientCertificate: &leaf.TLS}}
	res := deliver(t, c, envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
	m := srv.Messages()[0]
	if m.TLS == nil || len(m.TLS.PeerCertificates) == 0 || m.TLS.PeerCertificates[0].Subject.CommonName != clientName {
		t.Fatalf("server saw no client certificate")
	}
	if len(m.TLS.VerifiedChains) == 0 {
		t.Errorf("client certificate not verified by the server")
	}
}

func TestSessionResumption(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(fixed(policy.Verify), srv)
	first := deliver(t, c, envelope("user@example.test")).Recipients[0]
	second := deliver(t, c, envelope("user@example.test")).Recipients[0]
	wantDelivered(t, second)
	if first.TLS.Resumed || !second.TLS.Resumed {
		t.Errorf("resumed: first %v second %v, want false true", first.TLS.Resumed, second.TLS.Resumed)
	}
	if !second.TLS.Verified {
		t.Errorf("resumed session not verified")
	}
	if srv.Connections() != 2 {
		t.Errorf("connections = %d, want 2 (no pooling)", srv.Connections())
	}
	// A resumed session is still checked: a Connector that does not trust
	// the CA must refuse it even though the session cache holds a ticket.
	c.RootCAs = nil
	r := deliver(t, c, envelope("user@example.test")).Recipients[0]
	if r.Status != transport.Deferred || r.TLSFailure != policy.FailureCertificateNotTrusted {
		t.Errorf("resumption bypassed verification: %v %q %v", r.Status, r.TLSFailure, r.Reply)
	}
}

func TestConnectionPool(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(fixed(policy.Verify), srv)
	c.Pool = transport.PoolConfig{MaxIdle: 2}
	for i := 0; i < 3; i++ {
		r := deliver(t, c, envelope(fmt.Sprintf("u%d@example.test", i))).Recipients[0]
		wantDelivered(t, r)
		if !r.TLS.Verified || r.TLS.Version != tls.VersionTLS13 {
			t.Errorf("pooled delivery TLS = %+v", r.TLS)
		}
	}
	if srv.Connections() != 1 {
		t.Errorf("connections = %d, want 1 (reused)", srv.Connections())
	}
	if n := len(srv.Messages()); n != 3 {
		t.Errorf("messages = %d", n)
	}
	// A different policy never reuses the connection.
	cEncrypt := e.connector(fixed(policy.Encrypt), srv)
	cEncrypt.Pool = c.Pool
	deliver(t, cEncrypt, envelope("x@example.test"))
	if srv.Connections() != 2 {
		t.Errorf("connections = %d, want 2", srv.Connections())
	}
	cEncrypt.Close()
	c.Close()
	deliver(t, c, envelope("after-close@example.test"))
	if srv.Connections() != 3 {
		t.Errorf("after Close: connections = %d, want 3", srv.Connections())
	}
	if len(srv.Messages()) != 5 {
		t.Errorf("messages = %d, want 5", len(srv.Messages()))
	}
}

// The Connector with the static policy table (policy.ParseTable): domain
// entries for MX delivery, a "[host]:port" entry for a fixed next hop, and
// the strict default for domains the table does not list.
func TestStaticTablePolicy(t *testing.T) {
	ca, err := transporttest.NewCA("table CA")
	if err != nil {
		t.Fatal(err)
	}
	plainMX := transporttest.NewPlainServer(t)
	relay := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: ca, Hostname: "smtp.relay.test"})
	wrong := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.WrongNameCert, CA: ca})
	table := fmt.Sprintf(`# test table
legacy.test              may
partner.test             encrypt on-failure=bounce
[smtp.relay.test]:%d     secure  match=nexthop protocols=>=TLSv1.3
`, relay.Port)
	pol, err := policy.ParseTable(strings.NewReader(table), "test.tbl")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.mx("legacy.test", "mx.legacy.test")
	e.host("mx.legacy.test", "192.0.2.30", plainMX.Addr)
	e.mx("partner.test", "mx.partner.test")
	e.host("mx.partner.test", "192.0.2.31", plainMX.Addr)
	e.mx("unlisted.test", "mx.unlisted.test")
	e.host("mx.unlisted.test", "192.0.2.32", wrong.Addr)
	e.host("smtp.relay.test", "127.0.0.1", "")
	c := e.connector(pol, nil)
	c.RootCAs = ca.Pool
	c.Routes = []transport.Route{{Domain: ".relayed.test", NextHop: fmt.Sprintf("[smtp.relay.test]:%d", relay.Port)}}

	res := deliver(t, c, envelope("a@legacy.test", "b@partner.test", "c@unlisted.test", "d@x.relayed.test"))
	got := res.Recipients
	if got[0].Status != transport.Delivered || got[0].Requirement.Level != policy.May || got[0].Requirement.Source != policy.SourceStatic {
		t.Errorf("legacy.test: %v %v", got[0].Status, got[0].Requirement)
	}
	if got[1].Status != transport.Failed || got[1].Reply.EnhancedCode.String() != "5.7.4" {
		t.Errorf("partner.test: %v %v", got[1].Status, got[1].Reply)
	}
	if got[2].Status != transport.Deferred || got[2].Requirement.Level != policy.Verify || got[2].TLSFailure != policy.FailureCertificateHostMismatch {
		t.Errorf("unlisted.test: %v %v %q", got[2].Status, got[2].Requirement, got[2].TLSFailure)
	}
	r := got[3]
	wantDelivered(t, r)
	if r.Requirement.Level != policy.Secure || r.TLS.Version != tls.VersionTLS13 || !r.TLS.Verified {
		t.Errorf("relay: %v %+v", r.Requirement, r.TLS)
	}
}

func TestConnectionPoolIdleTimeout(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(fixed(policy.Verify), srv)
	c.Pool = transport.PoolConfig{MaxIdle: 1, IdleTimeout: 100 * time.Millisecond}
	defer c.Close()
	deliver(t, c, envelope("a@example.test"))
	time.Sleep(400 * time.Millisecond)
	r := deliver(t, c, envelope("b@example.test")).Recipients[0]
	wantDelivered(t, r)
	if srv.Connections() != 2 {
		t.Errorf("connections = %d, want 2 (idle connection expired)", srv.Connections())
	}
	if !r.TLS.Resumed {
		t.Errorf("new connection did not resume the TLS session")
	}
}

// RFC 8314 implicit TLS to a fixed next hop: nothing, not even EHLO,
// crosses in plaintext, and the certificate is checked per the level.
func TestImplicitTLSRoute(t *testing.T) {
	ca, err := transporttest.NewCA("implicit")
	if err != nil {
		t.Fatal(err)
	}
	good := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: ca, Hostname: "smtp.relay.test", ImplicitTLS: true})
	expired := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.ExpiredCert, CA: ca, Hostname: "smtp.relay.test", ImplicitTLS: true})
	e := newEnv(t)
	e.host("smtp.relay.test", "127.0.0.1", "")
	for _, tc := range []struct {
		srv  *transporttest.Server
		lvl  policy.Level
		want transport.Status
	}{{good, policy.Verify, transport.Delivered}, {good, policy.May, transport.Delivered}, {expired, policy.Verify, transport.Deferred}, {expired, policy.Encrypt, transport.Delivered}} {
		c := e.connector(nil, nil)
		c.RootCAs = ca.Pool
		c.Routes = []transport.Route{{Domain: "*", NextHop: fmt.Sprintf("smtp.relay.test:%d", tc.srv.Port), ImplicitTLS: true,
			Policy: policy.Fixed{Level: tc.lvl}}}
		r := deliver(t, c, envelope("a@example.net")).Recipients[0]
		if r.Status != tc.want {
			t.Errorf("%v to %v: %v %v", tc.lvl, tc.srv.Certificate.Leaf.NotAfter, r.Status, r.Reply)
			continue
		}
		if tc.want == transport.Delivered {
			if r.TLS == nil {
				t.Errorf("no TLS over implicit TLS")
			} else if r.TLS.Verified != (tc.lvl == policy.Verify) {
				t.Errorf("%v: verified = %v", tc.lvl, r.TLS.Verified)
			}
		}
		if tc.want == transport.Deferred && (r.TLSFailure != policy.FailureCertificateExpired || r.Reply.EnhancedCode.String() != "4.7.5") {
			t.Errorf("expired: %q %v", r.TLSFailure, r.Reply)
		}
	}
	for _, srv := range []*transporttest.Server{good, expired} {
		if transporttest.Contains(srv.Seen(), "EHLO", "MAIL FROM") {
			t.Errorf("plaintext on an implicit TLS connection:\n%q", srv.Seen())
		}
	}
	if len(good.Messages()) != 2 || len(expired.Messages()) != 1 {
		t.Errorf("messages: good %d expired %d", len(good.Messages()), len(expired.Messages()))
	}
}

// Deliver is safe for concurrent use, with and without pooled connections.
func TestConcurrentDeliveries(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(fixed(policy.Verify), srv)
	c.Pool = transport.PoolConfig{MaxIdle: 2}
	defer c.Close()
	const n = 12
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			res, err := c.Deliver(context.Background(), envelope(fmt.Sprintf("u%d@example.test", i)), strings.NewReader(string(testBody)), int64(len(testBody)))
			if err == nil && res.Recipients[0].Status != transport.Delivered {
				err = fmt.Errorf("%v: %v", res.Recipients[0].Status, res.Recipients[0].Reply)
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if len(srv.Messages()) != n {
		t.Errorf("messages = %d", len(srv.Messages()))
	}
	if srv.Connections() >= n {
		t.Logf("no connection was reused (%d connections)", srv.Connections())
	}
}

func TestImplicitTLSNeedsNextHop(t *testing.T) {
	c := &transport.Connector{Hostname: clientName, Routes: []transport.Route{{Domain: "*", ImplicitTLS: true}}}
	if _, err := c.Deliver(context.Background(), envelope("a@example.test"), strings.NewReader("x"), 1); err == nil {
		t.Error("ImplicitTLS on an MX route accepted")
	}
}
