package transport_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

func check(t *testing.T, c *transport.Connector, domain string) *transport.CheckReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := c.Check(ctx, domain)
	if err != nil {
		t.Fatalf("Check(%s): %v", domain, err)
	}
	return rep
}

func wantOutcome(t *testing.T, what string, o transport.CheckOutcome, v transport.Status, code int, status string, ft policy.FailureType) {
	t.Helper()
	if o.Result != v || o.Code != code || o.Status != status || o.TLSFailure != ft {
		t.Errorf("%s: outcome %s %d %s %q (%s), want %s %d %s %q", what, o.Result, o.Code, o.Status, o.TLSFailure, o.Message,
			v, code, status, ft)
	}
}

// noMail asserts that a fixture saw no MAIL command, in plaintext or
// over TLS, and accepted no message.
func noMail(t *testing.T, srv *transporttest.Server) {
	t.Helper()
	if m := srv.Mails(); len(m) != 0 {
		t.Errorf("server saw MAIL FROM %q during a check", m)
	}
	undelivered(t, srv)
	if transporttest.Contains(srv.Seen(), "MAIL FROM") {
		t.Errorf("MAIL FROM on the wire:\n%s", srv.Seen())
	}
}

// checkSingle checks example.test, whose one MX host is served by srv,
// under pol, with srv's CA as the roots.
func checkSingle(t *testing.T, srv *transporttest.Server, pol policy.Policy) *transport.CheckReport {
	t.Helper()
	e := newEnv(t)
	e.single(srv.Addr)
	return check(t, e.connector(pol, srv), "example.test")
}

func oneHost(t *testing.T, rep *transport.CheckReport) transport.CheckHost {
	t.Helper()
	if len(rep.Hosts) != 1 {
		t.Fatalf("hosts %+v, want one", rep.Hosts)
	}
	return rep.Hosts[0]
}

// level returns the verdict of the named level on h's handshake.
func level(t *testing.T, h transport.CheckHost, name string) transport.CheckLevel {
	t.Helper()
	if h.TLS == nil {
		t.Fatalf("%s: no TLS recorded", h.Host)
	}
	for _, l := range h.TLS.Levels {
		if l.Level == name {
			return l
		}
	}
	t.Fatalf("%s: no %s level in %+v", h.Host, name, h.TLS.Levels)
	return transport.CheckLevel{}
}

func TestCheckTLSHost(t *testing.T) {
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, RequireTLS: true})
	rep := checkSingle(t, srv, fixed(policy.Verify))
	wantOutcome(t, "overall", rep.Outcome, transport.Delivered, 250, "2.0.0", "")
	h := oneHost(t, rep)
	wantOutcome(t, h.Host, h.Outcome, transport.Delivered, 250, "2.0.0", "")
	if h.Host != "mx.example.test" || h.IP != "192.0.2.10" || h.Port != 25 || h.Preference != 10 || !h.STARTTLS || !h.TLSRequired {
		t.Errorf("host %+v", h)
	}
	if h.TLS == nil || !h.TLS.Verified || h.TLS.Version != "TLSv1.3" || !strings.HasPrefix(h.TLS.Cipher, "TLS_") ||
		h.TLS.ServerName != "mx.example.test" || len(h.TLS.Chain) != 1 || !slices.Equal(h.TLS.Chain[0].DNSNames, []string{"mx.example.test"}) {
		t.Fatalf("TLS %+v", h.TLS)
	}
	for _, l := range []string{"encrypt", "verify", "secure"} {
		if lv := level(t, h, l); !lv.OK {
			t.Errorf("level %s: %+v", l, lv)
		}
	}
	if !h.RequireTLS || !slices.Contains(h.Extensions, "REQUIRETLS") {
		t.Errorf("REQUIRETLS %v, extensions %q", h.RequireTLS, h.Extensions)
	}
	if p := rep.Policy; p.Level != "verify" || p.Source != policy.SourceDefault || p.Mode != "enforce" || p.OnFailure != "defer" {
		t.Errorf("policy %+v", p)
	}
	if rep.RequireTLS.Possible {
		t.Errorf("REQUIRETLS possible without an authenticated MX set: %+v", rep.RequireTLS)
	}
	if !slices.Equal(rep.MX.Hosts, []string{"mx.example.test"}) || rep.MX.Null || rep.MX.Implicit {
		t.Errorf("MX %+v", rep.MX)
	}
	noMail(t, srv)
	if n := len(srv.EHLONames()); n != 2 {
		t.Errorf("EHLO %d times, want 2 (before and after STARTTLS)", n)
	}
}

func TestCheckPlaintextHost(t *testing.T) {
	srv := transporttest.NewPlainServer(t)
	rep := checkSingle(t, srv, fixed(policy.Encrypt))
	wantOutcome(t, "encrypt", rep.Outcome, transport.Deferred, 451, "4.7.4", policy.FailureSTARTTLSNotSupported)
	h := oneHost(t, rep)
	if h.STARTTLS || h.TLS != nil || !h.TLSRequired {
		t.Errorf("host %+v", h)
	}
	wantOutcome(t, h.Host, h.Outcome, transport.Deferred, 451, "4.7.4", policy.FailureSTARTTLSNotSupported)

	rep = checkSingle(t, srv, fixed(policy.May))
	wantOutcome(t, "may", rep.Outcome, transport.Delivered, 250, "2.0.0", "")
	if h := oneHost(t, rep); h.TLS != nil || h.TLSRequired || h.Greeting == "" {
		t.Errorf("may: host %+v", h)
	}
	noMail(t, srv)
	if !transporttest.Contains(srv.Seen(), "QUIT") {
		t.Errorf("no QUIT:\n%s", srv.Seen())
	}
}

func TestCheckStrippingProxy(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	proxy := transporttest.NewStrippingProxy(t, srv.Addr)
	e := newEnv(t)
	e.single(proxy.Addr)
	rep := check(t, e.connector(policy.Fixed{Level: policy.Verify, OnFailure: policy.Bounce}, srv), "example.test")
	wantOutcome(t, "overall", rep.Outcome, transport.Failed, 554, "5.7.4", policy.FailureSTARTTLSNotSupported)
	if h := oneHost(t, rep); h.STARTTLS || h.TLS != nil {
		t.Errorf("host %+v", h)
	}
	if p := rep.Policy; p.OnFailure != "bounce" {
		t.Errorf("policy %+v", p)
	}
	noMail(t, srv)
	if b := proxy.Seen(); transporttest.Contains(b, "MAIL FROM") || !transporttest.Contains(b, "EHLO "+clientName) {
		t.Errorf("through the proxy:\n%s", b)
	}
}

func TestCheckExpiredCertificate(t *testing.T) {
	srv := transporttest.NewExpiredServer(t)
	rep := checkSingle(t, srv, fixed(policy.Verify))
	wantOutcome(t, "overall", rep.Outcome, transport.Deferred, 451, "4.7.5", policy.FailureCertificateExpired)
	h := oneHost(t, rep)
	if h.TLS == nil || h.TLS.Verified || h.TLS.Failure != policy.FailureCertificateExpired || len(h.TLS.Chain) != 1 ||
		!h.TLS.Chain[0].NotAfter.Before(time.Now()) {
		t.Fatalf("TLS %+v", h.TLS)
	}
	if l := level(t, h, "encrypt"); !l.OK {
		t.Errorf("encrypt: %+v", l)
	}
	for _, name := range []string{"verify", "secure"} {
		if l := level(t, h, name); l.OK || l.Failure != policy.FailureCertificateExpired {
			t.Errorf("%s: %+v", name, l)
		}
	}
	noMail(t, srv)
}

func TestCheckDANEMismatch(t *testing.T) {
	const host = "mx.dane.example"
	w := newStdWorld(t)
	srv := daneServer(t, host, nil, false)
	w.mx("dane.example", host, "192.0.2.30", srv, true)
	other := make([]byte, 32)
	rand.Read(other)
	w.tlsa(host, true, fakedns.TLSA(3, 1, 1, other))
	d := w.danePolicy(false)
	c := w.connector(&policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}, d, srv.RootCAs())
	rep := check(t, c, "dane.example")
	wantOutcome(t, "overall", rep.Outcome, transport.Deferred, 451, "4.7.5", policy.FailureValidation)
	if p := rep.Policy; p.Level != "dane" || p.Source != policy.SourceDANE {
		t.Errorf("policy %+v", p)
	}
	if !rep.MX.DNSSEC {
		t.Errorf("MX %+v, want DNSSEC-validated", rep.MX)
	}
	h := oneHost(t, rep)
	if h.DANE == nil || len(h.DANE.TLSA) != 1 || !strings.HasPrefix(h.DANE.TLSA[0], "3 1 1 ") || !h.DANE.DNSSEC {
		t.Errorf("DANE %+v", h.DANE)
	}
	if l := level(t, h, "dane"); l.OK || l.Failure != policy.FailureValidation {
		t.Errorf("dane level %+v", l)
	}
	if l := level(t, h, "verify"); !l.OK { // PKIX-valid: DANE must not fall back to it
		t.Errorf("verify level %+v", l)
	}
	noMail(t, srv)
	if rs := w.results(); len(rs) != 0 {
		t.Errorf("a check recorded TLS-RPT results: %+v", rs)
	}
}

func TestCheckMTASTSEnforceMXMismatch(t *testing.T) {
	w := newStdWorld(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.elsewhere.example", Cert: transporttest.GoodCert})
	w.mx("sts.example", "mx.elsewhere.example", "192.0.2.20", srv, false)
	sts := w.stsHost("sts.example", stsBody("enforce", "mx.sts.example"))
	c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
	rep := check(t, c, "sts.example")
	wantOutcome(t, "overall", rep.Outcome, transport.Deferred, 451, "4.4.4", policy.FailureValidation)
	if p := rep.Policy; p.Source != policy.SourceMTASTS || p.Mode != "enforce" || !slices.Equal(p.MXPatterns, []string{"mx.sts.example"}) ||
		!slices.Contains(p.Published, "mode: enforce") {
		t.Errorf("policy %+v", p)
	}
	if !slices.Equal(rep.MX.Refused, []string{"mx.elsewhere.example"}) || len(rep.Hosts) != 0 {
		t.Errorf("MX %+v hosts %+v", rep.MX, rep.Hosts)
	}
	if n := srv.Connections(); n != 0 {
		t.Errorf("%d connections to a host the policy refuses", n)
	}
	if rs := w.results(); len(rs) != 0 {
		t.Errorf("a check recorded TLS-RPT results: %+v", rs)
	}
}

func TestCheckNullAndImplicitMX(t *testing.T) {
	e := newEnv(t)
	e.mx("nomail.test", "")
	z := e.zones["nomail.test."]
	z.MX[0].Pref = 0
	e.zones["nomail.test."] = z
	rep := check(t, e.connector(fixed(policy.May), nil), "nomail.test")
	wantOutcome(t, "null MX", rep.Outcome, transport.Failed, 556, "5.1.10", "")
	if !rep.MX.Null || len(rep.Hosts) != 0 {
		t.Errorf("null MX: %+v", rep.MX)
	}

	srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "example.test"})
	e.host("example.test", "192.0.2.7", srv.Addr)
	rep = check(t, e.connector(fixed(policy.Verify), srv), "example.test")
	wantOutcome(t, "implicit MX", rep.Outcome, transport.Delivered, 250, "2.0.0", "")
	if !rep.MX.Implicit || !slices.Equal(rep.MX.Hosts, []string{"example.test"}) {
		t.Errorf("implicit MX: %+v", rep.MX)
	}
	noMail(t, srv)

	if _, err := e.connector(nil, nil).Check(context.Background(), "bad domain"); err == nil {
		t.Error("Check accepted a malformed domain")
	}
}

// TestCheckEveryMX: a check examines every MX host, also after one that
// would take the message, and its outcome is delivery's (the first host
// that would take it).
func TestCheckEveryMX(t *testing.T) {
	good := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, Hostname: "mx2.example.test"})
	plain := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx1.example.test"})
	e := newEnv(t)
	e.mx("example.test", "mx1.example.test", "mx2.example.test")
	e.host("mx1.example.test", "192.0.2.1", plain.Addr)
	e.host("mx2.example.test", "192.0.2.2", good.Addr)
	rep := check(t, e.connector(fixed(policy.Verify), good), "example.test")
	wantOutcome(t, "overall", rep.Outcome, transport.Delivered, 250, "2.0.0", "")
	if rep.Outcome.Host != "mx2.example.test" || len(rep.Hosts) != 2 {
		t.Fatalf("outcome %+v hosts %+v", rep.Outcome, rep.Hosts)
	}
	wantOutcome(t, "mx1", rep.Hosts[0].Outcome, transport.Deferred, 451, "4.7.4", policy.FailureSTARTTLSNotSupported)
	wantOutcome(t, "mx2", rep.Hosts[1].Outcome, transport.Delivered, 250, "2.0.0", "")

	// The good host first: the plaintext one is still examined.
	e = newEnv(t)
	e.mx("example.test", "mx2.example.test", "mx1.example.test")
	e.host("mx1.example.test", "192.0.2.1", plain.Addr)
	e.host("mx2.example.test", "192.0.2.2", good.Addr)
	c := e.connector(fixed(policy.Verify), good)
	c.Pool = transport.PoolConfig{MaxIdle: 2}
	rep = check(t, c, "example.test")
	wantOutcome(t, "overall", rep.Outcome, transport.Delivered, 250, "2.0.0", "")
	if rep.Outcome.Host != "mx2.example.test" || len(rep.Hosts) != 2 || rep.Hosts[1].Host != "mx1.example.test" {
		t.Fatalf("outcome %+v hosts %+v", rep.Outcome, rep.Hosts)
	}
	if plain.Connections() != 2 {
		t.Errorf("plaintext host: %d connections, want 2 (one per check)", plain.Connections())
	}
	// A check leaves no pooled connection behind: a delivery opens its own.
	deliver(t, c, envelope("user@example.test"))
	if n := good.Connections(); n != 3 {
		t.Errorf("good host: %d connections, want 3 (two checks, one delivery)", n)
	}
	noMail(t, plain)
}

func TestCheckRoute(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	c := e.connector(fixed(policy.Encrypt), srv)
	c.Routes = []transport.Route{{Domain: "partner.example", NextHop: srv.Addr}}
	rep := check(t, c, "partner.example")
	wantOutcome(t, "overall", rep.Outcome, transport.Delivered, 250, "2.0.0", "")
	if rep.NextHop != "[127.0.0.1]:"+strconv.Itoa(srv.Port) || len(rep.Hosts) != 1 || rep.Hosts[0].Host != "127.0.0.1" {
		t.Errorf("next hop %q hosts %+v", rep.NextHop, rep.Hosts)
	}
	h := rep.Hosts[0]
	if h.TLS == nil || h.TLS.Verified || !level(t, h, "encrypt").OK || level(t, h, "verify").OK {
		t.Errorf("TLS %+v", h.TLS)
	}
	noMail(t, srv)
}

// TestCheckReportJSON: the JSON form has the documented keys.
func TestCheckReportJSON(t *testing.T) {
	srv := transporttest.NewExpiredServer(t)
	rep := checkSingle(t, srv, fixed(policy.Verify))
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Domain string `json:"domain"`
		Policy struct {
			Level, Source string
		} `json:"policy"`
		Hosts []struct {
			Host string `json:"host"`
			TLS  struct {
				Version string `json:"version"`
				Levels  []struct {
					Level   string `json:"level"`
					OK      bool   `json:"ok"`
					Failure string `json:"failure"`
				} `json:"levels"`
			} `json:"tls"`
		} `json:"hosts"`
		Outcome struct {
			Result, Status string
			TLSFailure     string `json:"tls_failure"`
		} `json:"outcome"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Domain != "example.test" || m.Policy.Level != "verify" || m.Outcome.Result != "deferred" || m.Outcome.Status != "4.7.5" ||
		m.Outcome.TLSFailure != "certificate-expired" || len(m.Hosts) != 1 || m.Hosts[0].TLS.Version == "" ||
		len(m.Hosts[0].TLS.Levels) != 3 || m.Hosts[0].TLS.Levels[1].Failure != "certificate-expired" {
		t.Errorf("JSON:\n%s", b)
	}
}

// TestCheckReportText: the text form names the policy, the host, each
// level's verdict and the outcome with its DSN status.
func TestCheckReportText(t *testing.T) {
	srv := transporttest.NewExpiredServer(t)
	rep := checkSingle(t, srv, fixed(policy.Verify))
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"check example.test at ",
		"policy:     verify (default: default level), enforce, on failure defer, min TLSv1.2",
		"mx.example.test [192.0.2.10]:25 preference 10",
		"requires:   tls required; verify: PKIX chain and MX host name",
		"starttls:   offered",
		"levels:     encrypt ok, verify FAILS (certificate-expired), secure FAILS (certificate-expired)",
		"verdict: deferred: 451 4.7.5 ",
		"[certificate-expired]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

// TestCheckHostileServerText: what a server says (greeting, EHLO
// parameters) reaches the report without control characters, so that a
// hostile MX cannot forge lines or terminal escapes in an operator's
// report.
func TestCheckHostileServerText(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "220 evil.example \x1b[2J\rverdict: deliver ESMTP\r\n")
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(line)[0]) {
			case "EHLO":
				io.WriteString(c, "250-evil.example\r\n250-X-EVIL \x1b]0;pwn\x07\x08\x08\r\n250 SIZE 10\r\n")
			case "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				io.WriteString(c, "502 no\r\n")
			}
		}
	}()
	e := newEnv(t)
	e.single(l.Addr().String())
	rep := check(t, e.connector(fixed(policy.May), nil), "example.test")
	wantOutcome(t, "overall", rep.Outcome, transport.Delivered, 250, "2.0.0", "")
	var b strings.Builder
	rep.WriteText(&b)
	j, _ := json.Marshal(rep)
	if i := strings.IndexFunc(b.String(), func(r rune) bool { return r < ' ' && r != '\n' || r == 0x7f }); i >= 0 {
		t.Errorf("text report has control character %q at %d:\n%q", b.String()[i], i, b.String())
	}
	for _, esc := range []string{`\u001b`, `\u0007`, `\u0008`, `\r`} {
		if strings.Contains(string(j), esc) {
			t.Errorf("JSON report has %s:\n%s", esc, j)
		}
	}
	if h := oneHost(t, rep); !strings.Contains(h.Greeting, "evil.example") || !slices.Contains(h.Extensions, "X-EVIL ?]0;pwn???") {
		t.Errorf("greeting %q extensions %q", h.Greeting, h.Extensions)
	}
}

// countingObserver counts the Connector's delivery and TLS failure events.
type countingObserver struct {
	transport.NopObserver
	mu                  sync.Mutex
	deliveries, failure int
}

func (o *countingObserver) ObserveDelivery(transport.DeliveryEvent) {
	o.mu.Lock()
	o.deliveries++
	o.mu.Unlock()
}

func (o *countingObserver) ObserveTLSFailure(transport.TLSFailureEvent) {
	o.mu.Lock()
	o.failure++
	o.mu.Unlock()
}

// TestCheckIsNotADelivery: a check moves no delivery or TLS failure
// counter of the Connector's Observer (metrics count mail, not checks);
// the same Connector's delivery does.
func TestCheckIsNotADelivery(t *testing.T) {
	srv := transporttest.NewExpiredServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	obs := &countingObserver{}
	c := e.connector(fixed(policy.Verify), srv)
	c.Observer = obs
	check(t, c, "example.test")
	if obs.deliveries != 0 || obs.failure != 0 {
		t.Errorf("a check was observed: %d deliveries, %d TLS failures", obs.deliveries, obs.failure)
	}
	deliver(t, c, envelope("user@example.test"))
	if obs.deliveries != 1 || obs.failure != 1 {
		t.Errorf("a delivery was observed as %d deliveries, %d TLS failures; want 1, 1", obs.deliveries, obs.failure)
	}
}
