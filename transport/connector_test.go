package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

const (
	clientName = "client.example.org"
	bodyMarker = "BODY-MARKER-7f3a"
)

var testBody = []byte("From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\n" +
	bodyMarker + "\r\n.a line starting with a dot\r\nend\r\n")

// env is the test harness: one fake DNS, one address-mapping dialer.
type env struct {
	t      *testing.T
	zones  map[string]mockdns.Zone
	dialer *transporttest.Dialer
}

func newEnv(t *testing.T) *env {
	return &env{t: t, zones: map[string]mockdns.Zone{}, dialer: &transporttest.Dialer{Map: map[string]string{}}}
}

// mx publishes domain's MX hosts in order with increasing preference
// (or the given preference list) and maps each host's fake address to addr.
func (e *env) mx(domain string, hosts ...string) {
	z := e.zones[domain+"."]
	for i, h := range hosts {
		z.MX = append(z.MX, net.MX{Host: h + ".", Pref: uint16(10 * (i + 1))})
	}
	e.zones[domain+"."] = z
}

// host gives host the fake address ip, served by the server at addr.
func (e *env) host(host, ip, addr string) {
	z := e.zones[host+"."]
	z.A = append(z.A, ip)
	e.zones[host+"."] = z
	if addr != "" {
		e.dialer.Map[ip+":25"] = addr
	}
}

// single wires example.test → mx.example.test → srv.
func (e *env) single(addr string) {
	e.mx("example.test", "mx.example.test")
	e.host("mx.example.test", "192.0.2.10", addr)
}

func (e *env) connector(pol policy.Policy, roots *transporttest.Server) *transport.Connector {
	c := &transport.Connector{
		Hostname: clientName,
		Policy:   pol,
		Resolver: &mockdns.Resolver{Zones: e.zones},
		Dialer:   e.dialer,
		Shuffle:  func(int, func(i, j int)) {},
		Timeouts: transport.ConnectorTimeouts{Connect: 5 * time.Second, Greeting: 10 * time.Second, Command: 10 * time.Second, Data: 10 * time.Second},
	}
	if roots != nil {
		c.RootCAs = roots.RootCAs()
	}
	return c
}

func envelope(rcpts ...string) *transport.Envelope {
	e := &transport.Envelope{ID: "test-1", From: "sender@example.org"}
	for _, r := range rcpts {
		e.Recipients = append(e.Recipients, transport.Recipient{Address: r})
	}
	return e
}

func deliver(t *testing.T, c *transport.Connector, e *transport.Envelope) *transport.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Deliver(ctx, e, bytes.NewReader(testBody), int64(len(testBody)))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(res.Recipients) != len(e.Recipients) {
		t.Fatalf("got %d results for %d recipients", len(res.Recipients), len(e.Recipients))
	}
	return res
}

func fixed(l policy.Level) policy.Policy {
	return policy.Fixed{Level: l, InsecurePlaintext: l == policy.None}
}

// assertNoPlaintextTransaction fails if MAIL, RCPT or body bytes crossed wire.
func assertNoPlaintextTransaction(t *testing.T, what string, wire []byte) {
	t.Helper()
	if transporttest.Contains(wire, "MAIL FROM", "RCPT TO", bodyMarker, "DATA\r\n") {
		t.Errorf("%s saw a transaction in plaintext:\n%s", what, wire)
	}
	if !transporttest.Contains(wire, "EHLO "+clientName) {
		t.Errorf("%s did not even see EHLO %s; the test proves nothing:\n%s", what, clientName, wire)
	}
}

func wantDelivered(t *testing.T, r transport.RecipientResult) {
	t.Helper()
	if r.Status != transport.Delivered {
		t.Fatalf("%s: status %v, reply %v", r.Recipient.Address, r.Status, r.Reply)
	}
}

func wantTLSFailure(t *testing.T, r transport.RecipientResult, status transport.Status, ec string, sentinel error, ft policy.FailureType) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status = %v, want %v (reply %v)", r.Status, status, r.Reply)
	}
	if r.Reply == nil {
		t.Fatalf("no reply")
	}
	if got := r.Reply.EnhancedCode.String(); got != ec {
		t.Errorf("enhanced code = %s, want %s (%v)", got, ec, r.Reply)
	}
	if !errors.Is(r.Reply, sentinel) {
		t.Errorf("reply %v does not wrap %v", r.Reply, sentinel)
	}
	if r.TLSFailure != ft {
		t.Errorf("TLS failure = %q, want %q", r.TLSFailure, ft)
	}
	if !r.Reply.Local {
		t.Errorf("reply %v: Local not set on a failure the Connector found itself", r.Reply)
	}
}

func TestDeliverAtEachLevel(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	for _, lvl := range []policy.Level{policy.None, policy.May, policy.Encrypt, policy.Verify, policy.Secure} {
		t.Run(lvl.String(), func(t *testing.T) {
			e := newEnv(t)
			e.single(srv.Addr)
			c := e.connector(fixed(lvl), srv)
			before := len(srv.Messages())
			res := deliver(t, c, envelope("user@example.test"))
			r := res.Recipients[0]
			wantDelivered(t, r)
			if r.Requirement.Level != lvl || r.Requirement.Source != policy.SourceDefault {
				t.Errorf("requirement = %v", r.Requirement)
			}
			if r.RemoteMTA.Host != "mx.example.test" || !r.RemoteMTA.IP.Equal(net.ParseIP("192.0.2.10")) {
				t.Errorf("remote MTA = %v", r.RemoteMTA)
			}
			if r.Reply == nil || r.Reply.Code != 250 {
				t.Errorf("reply = %v", r.Reply)
			}
			msgs := srv.Messages()
			if len(msgs) != before+1 {
				t.Fatalf("server has %d messages, want %d", len(msgs), before+1)
			}
			m := msgs[len(msgs)-1]
			if !bytes.Equal(m.Data, testBody) {
				t.Errorf("body altered in transit:\n%q\nwant\n%q", m.Data, testBody)
			}
			if lvl == policy.None {
				if r.TLS != nil || m.TLS != nil {
					t.Errorf("level none used TLS")
				}
				return
			}
			if r.TLS == nil || m.TLS == nil {
				t.Fatalf("no TLS at level %v", lvl)
			}
			if r.TLS.Version < tls.VersionTLS12 || r.TLS.CipherSuite == 0 {
				t.Errorf("TLS info = %+v", r.TLS)
			}
			if want := lvl.VerifiesPKIX(); r.TLS.Verified != want {
				t.Errorf("verified = %v, want %v", r.TLS.Verified, want)
			}
			if r.TLS.ServerName != "mx.example.test" {
				t.Errorf("SNI = %q", r.TLS.ServerName)
			}
		})
	}
	// Across all levels the server never saw any name but ours.
	for _, n := range srv.EHLONames() {
		if n != clientName {
			t.Errorf("server was greeted as %q, want %q", n, clientName)
		}
	}
}

// The TLS levels share one server; a plaintext-only one refuses them.
func TestPlaintextOnlyServer(t *testing.T) {
	for _, lvl := range []policy.Level{policy.Encrypt, policy.Verify, policy.Secure} {
		t.Run(lvl.String(), func(t *testing.T) {
			srv := transporttest.NewPlainServer(t)
			e := newEnv(t)
			e.single(srv.Addr)
			res := deliver(t, e.connector(fixed(lvl), srv), envelope("user@example.test"))
			wantTLSFailure(t, res.Recipients[0], transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered,
				policy.FailureSTARTTLSNotSupported)
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("server accepted %d messages", n)
			}
			assertNoPlaintextTransaction(t, "plaintext server", srv.Seen())
		})
	}
	t.Run("may", func(t *testing.T) {
		srv := transporttest.NewPlainServer(t)
		e := newEnv(t)
		e.single(srv.Addr)
		res := deliver(t, e.connector(fixed(policy.May), srv), envelope("user@example.test"))
		wantDelivered(t, res.Recipients[0])
		if res.Recipients[0].TLS != nil {
			t.Errorf("TLS reported on a plaintext delivery")
		}
		if len(srv.Messages()) != 1 {
			t.Errorf("message not received")
		}
	})
}

func TestCertificateFailures(t *testing.T) {
	cases := []struct {
		name string
		kind transporttest.CertKind
		ft   policy.FailureType
	}{
		{"wrong-name", transporttest.WrongNameCert, policy.FailureCertificateHostMismatch},
		{"untrusted", transporttest.UntrustedCert, policy.FailureCertificateNotTrusted},
		{"expired", transporttest.ExpiredCert, policy.FailureCertificateExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: tc.kind})
			e := newEnv(t)
			e.single(srv.Addr)
			for _, lvl := range []policy.Level{policy.Verify, policy.Secure} {
				res := deliver(t, e.connector(fixed(lvl), srv), envelope("user@example.test"))
				wantTLSFailure(t, res.Recipients[0], transport.Deferred, "4.7.5", transport.ErrCertificate, tc.ft)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Fatalf("server accepted %d messages under verify/secure", n)
			}
			assertNoPlaintextTransaction(t, "server", srv.Seen())
			// Encrypt does not check the certificate but says so.
			res := deliver(t, e.connector(fixed(policy.Encrypt), srv), envelope("user@example.test"))
			r := res.Recipients[0]
			wantDelivered(t, r)
			if r.TLS == nil || r.TLS.Verified {
				t.Errorf("encrypt: TLS = %+v, want unverified TLS", r.TLS)
			}
		})
	}
}

// Secure checks the certificate against the next-hop domain (or match
// names), never against the MX name that DNS returned.
func TestSecureUsesMatchNamesNotMXName(t *testing.T) {
	ca, err := transporttest.NewCA("shared")
	if err != nil {
		t.Fatal(err)
	}
	// An MX record (forgeable) points at mx.attacker.test, which holds a
	// perfectly valid certificate for its own name.
	attacker := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: ca, Hostname: "mx.attacker.test"})
	e := newEnv(t)
	e.mx("example.test", "mx.attacker.test")
	e.host("mx.attacker.test", "192.0.2.66", attacker.Addr)

	res := deliver(t, e.connector(fixed(policy.Verify), attacker), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0]) // Verify trusts the MX name: that is its weakness

	res = deliver(t, e.connector(fixed(policy.Secure), attacker), envelope("user@example.test"))
	wantTLSFailure(t, res.Recipients[0], transport.Deferred, "4.7.5", transport.ErrCertificate,
		policy.FailureCertificateHostMismatch)

	// Explicit match names are honoured.
	matchPol := policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: policy.Secure, Match: []string{"mx.attacker.test"}, Source: policy.SourceStatic}, nil
	})
	res = deliver(t, e.connector(matchPol, attacker), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
	if res.Recipients[0].Requirement.Source != policy.SourceStatic || !res.Recipients[0].TLS.Verified {
		t.Errorf("result = %+v", res.Recipients[0])
	}

	// A server whose certificate names the domain passes Secure under any
	// MX name, and fails Verify (its certificate does not name the MX).
	good := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, CA: ca, Hostname: "mail.example.test"})
	e2 := newEnv(t)
	e2.mx("example.test", "mx.hosting.test")
	e2.host("mx.hosting.test", "192.0.2.20", good.Addr)
	res = deliver(t, e2.connector(fixed(policy.Secure), good), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
	res = deliver(t, e2.connector(fixed(policy.Verify), good), envelope("user@example.test"))
	wantTLSFailure(t, res.Recipients[0], transport.Deferred, "4.7.5", transport.ErrCertificate,
		policy.FailureCertificateHostMismatch)
}

// The man-in-the-middle tests: a proxy that strips STARTTLS from the EHLO
// reply, and one that answers STARTTLS with an error. Under Encrypt and
// above nothing of the transaction may cross the proxy.
func TestSTARTTLSDowngradeProxies(t *testing.T) {
	modes := []struct {
		name string
		new  func(testing.TB, string) *transporttest.Proxy
	}{
		{"stripping", transporttest.NewStrippingProxy},
		{"starttls-error", transporttest.NewSTARTTLSErrorProxy},
	}
	for _, m := range modes {
		for _, lvl := range []policy.Level{policy.Encrypt, policy.Verify, policy.Secure} {
			t.Run(m.name+"/"+lvl.String(), func(t *testing.T) {
				srv := transporttest.NewTLSServer(t)
				proxy := m.new(t, srv.Addr)
				e := newEnv(t)
				e.single(proxy.Addr)
				res := deliver(t, e.connector(fixed(lvl), srv), envelope("user@example.test", "other@example.test"))
				for _, r := range res.Recipients {
					wantTLSFailure(t, r, transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered,
						policy.FailureSTARTTLSNotSupported)
				}
				assertNoPlaintextTransaction(t, "proxy", proxy.Seen())
				if m.name == "starttls-error" && !transporttest.Contains(proxy.Seen(), "STARTTLS") {
					t.Errorf("client never tried STARTTLS through the error proxy")
				}
				if len(srv.Messages()) != 0 {
					t.Errorf("upstream received a message")
				}
			})
		}
		// May is opportunistic: the downgrade succeeds, which shows the proxy
		// really does sit in the path and record the transaction.
		t.Run(m.name+"/may", func(t *testing.T) {
			srv := transporttest.NewTLSServer(t)
			proxy := m.new(t, srv.Addr)
			e := newEnv(t)
			e.single(proxy.Addr)
			res := deliver(t, e.connector(fixed(policy.May), srv), envelope("user@example.test"))
			wantDelivered(t, res.Recipients[0])
			if res.Recipients[0].TLS != nil {
				t.Errorf("TLS reported through a downgrading proxy")
			}
			if !transporttest.Contains(proxy.Seen(), "MAIL FROM:<sender@example.org>", bodyMarker) {
				t.Errorf("proxy did not record the plaintext transaction:\n%s", proxy.Seen())
			}
		})
	}
}

func TestMinimumTLSVersion(t *testing.T) {
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, MaxVersion: tls.VersionTLS12})
	e := newEnv(t)
	e.single(srv.Addr)
	need := func(v uint16, lvl policy.Level) policy.Policy {
		return policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
			return policy.Requirement{Domain: d, Level: lvl, MinVersion: v, Source: policy.SourceStatic}, nil
		})
	}
	for _, lvl := range []policy.Level{policy.Encrypt, policy.Verify} {
		res := deliver(t, e.connector(need(tls.VersionTLS13, lvl), srv), envelope("user@example.test"))
		wantTLSFailure(t, res.Recipients[0], transport.Deferred, "4.7.5", transport.ErrTLSVersion, policy.FailureValidation)
	}
	if len(srv.Messages()) != 0 {
		t.Fatal("message delivered over TLS 1.2 to a TLS 1.3 requirement")
	}
	assertNoPlaintextTransaction(t, "server", srv.Seen())
	res := deliver(t, e.connector(need(tls.VersionTLS12, policy.Verify), srv), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0])
	if res.Recipients[0].TLS.Version != tls.VersionTLS12 {
		t.Errorf("version = %x", res.Recipients[0].TLS.Version)
	}
}

func TestBounceVersusDefer(t *testing.T) {
	srv := transporttest.NewPlainServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	res := deliver(t, e.connector(policy.Fixed{Level: policy.Encrypt, OnFailure: policy.Bounce}, srv), envelope("user@example.test"))
	r := res.Recipients[0]
	wantTLSFailure(t, r, transport.Failed, "5.7.4", transport.ErrSTARTTLSNotOffered, policy.FailureSTARTTLSNotSupported)
	if r.Reply.Code/100 != 5 || r.Reply.Temporary() {
		t.Errorf("bounce: reply %v", r.Reply)
	}
	res = deliver(t, e.connector(policy.Fixed{Level: policy.Encrypt, OnFailure: policy.Defer}, srv), envelope("user@example.test"))
	r = res.Recipients[0]
	if r.Status != transport.Deferred || r.Reply.Code/100 != 4 || !r.Reply.Temporary() {
		t.Errorf("defer: %v %v", r.Status, r.Reply)
	}

	bad := transporttest.NewExpiredServer(t)
	e2 := newEnv(t)
	e2.single(bad.Addr)
	res = deliver(t, e2.connector(policy.Fixed{Level: policy.Verify, OnFailure: policy.Bounce}, bad), envelope("user@example.test"))
	wantTLSFailure(t, res.Recipients[0], transport.Failed, "5.7.5", transport.ErrCertificate, policy.FailureCertificateExpired)
}

// A nil Policy is strict: Verify.
func TestNilPolicyIsVerify(t *testing.T) {
	srv := transporttest.NewWrongNameServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	res := deliver(t, e.connector(nil, srv), envelope("user@example.test"))
	wantTLSFailure(t, res.Recipients[0], transport.Deferred, "4.7.5", transport.ErrCertificate, policy.FailureCertificateHostMismatch)
	if got := res.Recipients[0].Requirement.Level; got != policy.Verify {
		t.Errorf("level = %v", got)
	}
}

// An empty Hostname depends on this host's name: see
// TestZeroHostnamesAgree and TestHostnameDefault.
func TestHostnameRequired(t *testing.T) {
	for _, h := range []string{"localhost", "LOCALHOST", "localhost.localdomain", "bad name", "mail"} {
		c := &transport.Connector{Hostname: h}
		_, err := c.Deliver(context.Background(), envelope("a@example.test"), bytes.NewReader(testBody), int64(len(testBody)))
		if err == nil {
			t.Errorf("Hostname %q accepted", h)
		}
	}
}

func TestPolicyLookupErrorDefers(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	pol := policy.Func(func(context.Context, string) (policy.Requirement, error) {
		return policy.Requirement{}, errors.New("DNS timeout")
	})
	res := deliver(t, e.connector(pol, srv), envelope("user@example.test"))
	r := res.Recipients[0]
	if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrPolicyLookup) {
		t.Errorf("got %v %v", r.Status, r.Reply)
	}
	if srv.Connections() != 0 {
		t.Errorf("connected despite unknown policy")
	}
}

func TestDANEWithoutTLSA(t *testing.T) {
	srv := transporttest.NewPlainServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	res := deliver(t, e.connector(fixed(policy.DANE), srv), envelope("user@example.test"))
	wantDelivered(t, res.Recipients[0]) // no TLSA: opportunistic (RFC 7672 §2.2)
	res = deliver(t, e.connector(fixed(policy.DANEOnly), srv), envelope("user@example.test"))
	r := res.Recipients[0]
	if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrDANE) || r.TLSFailure != policy.FailureDANERequired {
		t.Errorf("dane-only without TLSA: %v %v %q", r.Status, r.Reply, r.TLSFailure)
	}
	if len(srv.Messages()) != 1 {
		t.Errorf("messages = %d", len(srv.Messages()))
	}
}

func TestMTASTSTestingModeReportsButDelivers(t *testing.T) {
	srv := transporttest.NewWrongNameServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	pol := policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: policy.Verify, Mode: policy.Testing, Source: policy.SourceMTASTS}, nil
	})
	res := deliver(t, e.connector(pol, srv), envelope("user@example.test"))
	r := res.Recipients[0]
	wantDelivered(t, r)
	if r.TLSFailure != policy.FailureCertificateHostMismatch || r.TLS == nil || r.TLS.Verified {
		t.Errorf("testing mode: failure %q TLS %+v", r.TLSFailure, r.TLS)
	}
}

func TestLogLine(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	var buf bytes.Buffer
	c := e.connector(fixed(policy.Verify), srv)
	c.Logger = slogJSON(&buf)
	deliver(t, c, envelope("user@example.test"))
	line := buf.String()
	for _, k := range []string{`"domain":"example.test"`, `"mx":"mx.example.test"`, `"tls_version":"TLSv1.3"`, `"cipher":"TLS_`,
		`"verified":true`, `"policy":"verify/default"`, `"result":"delivered=1"`, `"code":250`} {
		if !strings.Contains(line, k) {
			t.Errorf("log line lacks %s:\n%s", k, line)
		}
	}
	if n := strings.Count(line, `"msg":"delivery attempt"`); n != 1 {
		t.Errorf("%d attempt lines, want 1", n)
	}
}
