package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// fakeDNS is a struct-of-maps resolver for the Connector (MX, A) and the
// MTA-STS client (TXT).
type fakeDNS struct {
	mx  map[string][]*net.MX
	ip  map[string][]net.IPAddr
	txt map[string][]string
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (d *fakeDNS) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if v, ok := d.mx[strings.TrimSuffix(name, ".")]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (d *fakeDNS) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if v, ok := d.ip[strings.TrimSuffix(host, ".")]; ok {
		return v, nil
	}
	return nil, notFound(host)
}

func (d *fakeDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := d.txt[strings.TrimSuffix(name, ".")]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

// stsWorld is a destination sts.example publishing an MTA-STS policy on a
// loopback HTTPS host, with its MX on a loopback transporttest server;
// everything certified by one test CA.
type stsWorld struct {
	mx     *transporttest.Server
	https  *httptest.Server
	dns    *fakeDNS
	dialer *transporttest.Dialer
}

func newSTSWorld(t *testing.T, policyText string) *stsWorld {
	t.Helper()
	ca, err := transporttest.NewCA("sts test CA")
	if err != nil {
		t.Fatal(err)
	}
	w := &stsWorld{}
	w.mx = transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert, CA: ca})
	leaf, err := ca.Issue(transporttest.LeafOptions{DNSNames: []string{"mta-sts.sts.example"}})
	if err != nil {
		t.Fatal(err)
	}
	w.https = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.Host != "mta-sts.sts.example" || req.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(rw, req)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, policyText)
	}))
	w.https.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	w.https.StartTLS()
	t.Cleanup(w.https.Close)
	w.dns = &fakeDNS{
		mx:  map[string][]*net.MX{"sts.example": {{Host: "mx.sts.example.", Pref: 10}}},
		ip:  map[string][]net.IPAddr{"mx.sts.example": {{IP: net.ParseIP("192.0.2.30")}}},
		txt: map[string][]string{"_mta-sts.sts.example": {"v=STSv1; id=20261127;"}},
	}
	w.dialer = &transporttest.Dialer{Map: map[string]string{"192.0.2.30:25": w.mx.Addr}}
	return w
}

// setup points the relay's Connector and MTA-STS client at the world.
func (w *stsWorld) setup(r *Relay) {
	if r.reporter != nil {
		r.reporter.Resolver = w.dns
	}
	r.connector.Resolver = w.dns
	r.connector.Dialer = w.dialer
	r.connector.RootCAs = w.mx.CA.Pool
	r.mtasts.Resolver = w.dns
	r.mtasts.RootCAs = w.mx.CA.Pool
	httpsAddr := w.https.Listener.Addr().String()
	r.mtasts.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "mta-sts.sts.example:443" {
			return nil, fmt.Errorf("test: refusing to dial %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, httpsAddr)
	}
}

// With -mta-sts and -default-tls may, a destination's enforced MTA-STS
// policy raises the level to verify: the mail goes out over verified TLS,
// the policy is cached under -data/mta-sts, and -tlsrpt records exactly
// one "sts" success per delivery attempt (the Connector records them; the
// relay must not record them a second time).
func TestMTASTSEnforcedAndTLSRPTRecorded(t *testing.T) {
	w := newSTSWorld(t, "version: STSv1\nmode: enforce\nmx: mx.sts.example\nmax_age: 86400\n")
	users := writeUsers(t, "alice", "s3cret")
	tr := startRelayWith(t, w.setup, "-users", users, "-mta-sts", "-tlsrpt", "-default-tls", "may")
	if tr.connector.TLSRPT == nil {
		t.Fatal("-tlsrpt did not set Connector.TLSRPT")
	}

	// Two messages, one after the other: two attempts, two results.
	for i := 1; i <= 2; i++ {
		c := tr.dialTLS(t, "submissions")
		if err := auth(c, "alice", "s3cret"); err != nil {
			t.Fatal(err)
		}
		if err := send(c, "alice@localhost", []string{"dest@sts.example"}, testBody); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "delivery to mx.sts.example", 30*time.Second, func() bool { return len(w.mx.Messages()) == i })
		waitFor(t, "the attempt log line", 30*time.Second, func() bool { return connectorAttempts(tr, "sts.example") == i })
	}
	for _, m := range w.mx.Messages() {
		if m.TLS == nil {
			t.Fatal("delivered without TLS")
		}
	}
	if err := contains(tr.logs.String(), "policy=verify/mta-sts", "verified=true"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tr.cfg.DataDir, "mta-sts", "sts.example.json")); err != nil {
		t.Fatalf("MTA-STS policy not cached under -data: %v", err)
	}
	rec := tlsrptResults(t, tr)
	if n := connectorAttempts(tr, "sts.example"); len(rec) != n || n != 2 {
		t.Fatalf("%d TLS-RPT results for %d delivery attempts, want exactly one per attempt: %+v", len(rec), n, rec)
	}
	for _, r := range rec {
		if r.PolicyType != tlsrpt.PolicySTS || r.ResultType != tlsrpt.ResultSuccess ||
			r.PolicyDomain != "sts.example" || r.ReceivingMXHostname != "mx.sts.example" ||
			strings.Join(r.PolicyString, "|") != "version: STSv1|mode: enforce|mx: mx.sts.example|max_age: 86400" ||
			strings.Join(r.MXHost, "|") != "mx.sts.example" {
			t.Fatalf("TLS-RPT result: %+v", r)
		}
	}

	// The daily report for today's results goes to the rua the domain
	// publishes (here a local Maildir), once.
	w.dns.txt["_smtp._tls.sts.example"] = []string{"v=TLSRPTv1; rua=mailto:tls-reports@localhost"}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for range 2 {
		if err := tr.reporter.ReportDay(t.Context(), today); err != nil {
			t.Fatalf("reportDay: %v", err)
		}
	}
	waitFor(t, "the TLS-RPT report mail", 30*time.Second, func() bool {
		return len(maildirFiles(t, tr.cfg, "tls-reports@localhost", "new")) >= 1
	})
	time.Sleep(200 * time.Millisecond) // a second (wrong) report would have arrived by now
	files := maildirFiles(t, tr.cfg, "tls-reports@localhost", "new")
	if len(files) != 1 {
		t.Fatalf("want exactly 1 report mail, got %d", len(files))
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	report, err := tlsrpt.ParseReportMail(f)
	if err != nil {
		t.Fatalf("report mail: %v", err)
	}
	if err := report.Validate(true); err != nil {
		t.Fatalf("report does not follow RFC 8460 §4: %v", err)
	}
	if len(report.Policies) != 1 {
		t.Fatalf("report policies: %+v", report.Policies)
	}
	p := report.Policies[0]
	if p.Policy.Domain != "sts.example" || p.Policy.Type != tlsrpt.PolicySTS || p.Summary.TotalSuccessfulSessionCount != 2 ||
		p.Summary.TotalFailureSessionCount != 0 || report.OrganizationName != "relay.test" || report.ContactInfo != "postmaster@relay.test" {
		t.Fatalf("report: %+v", report)
	}
	b, _ := os.ReadFile(files[0])
	if err := contains(string(b), "Return-Path: <>", "TLS-Required: No", "report-type=tlsrpt", "TLS-Report-Domain: sts.example"); err != nil {
		t.Fatal(err)
	}
}

// connectorAttempts counts the Connector's "delivery attempt" log lines
// for domain (one per attempt, see transport's logAttempt).
func connectorAttempts(tr *testRelay, domain string) int {
	n := 0
	for l := range strings.Lines(tr.logs.String()) {
		if strings.Contains(l, `msg="delivery attempt"`) && strings.Contains(l, "part=connector") &&
			strings.Contains(l, " domain="+domain+" ") {
			n++
		}
	}
	return n
}

// An enforced MTA-STS policy whose mx patterns do not cover the MX host
// stops delivery (RFC 8461 §4.2) even though -default-tls is may; with
// -on-tls-failure bounce the sender gets a DSN at once, and the MX never
// sees a connection.
func TestMTASTSMismatchBounces(t *testing.T) {
	w := newSTSWorld(t, "version: STSv1\nmode: enforce\nmx: mail.other.example\nmax_age: 86400\n")
	users := writeUsers(t, "alice", "s3cret")
	tr := startRelayWith(t, w.setup, "-users", users, "-mta-sts", "-default-tls", "may", "-on-tls-failure", "bounce")

	c := tr.dialTLS(t, "submission")
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "alice@localhost", []string{"dest@sts.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DSN", 30*time.Second, func() bool { return len(maildirFiles(t, tr.cfg, "alice@localhost", "new")) == 1 })
	dsn, _ := os.ReadFile(maildirFiles(t, tr.cfg, "alice@localhost", "new")[0])
	if err := contains(string(dsn), "Final-Recipient: rfc822; dest@sts.example", "Action: failed", "Status: 5.4.4", "mx patterns"); err != nil {
		t.Fatal(err)
	}
	if w.mx.Connections() != 0 || len(w.mx.Messages()) != 0 {
		t.Fatalf("MX outside the MTA-STS policy was contacted: %d connections", w.mx.Connections())
	}
}

func tlsrptResults(t *testing.T, tr *testRelay) []tlsrpt.Result {
	t.Helper()
	var out []tlsrpt.Result
	now := time.Now()
	err := tr.tlsrpt.Results(t.Context(), now.Add(-time.Hour), now.Add(time.Hour), func(r tlsrpt.Result) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// With -dane-resolver pointing at a resolver that does not answer, the TLS
// policy of a destination cannot be determined: the message is deferred,
// never sent with less protection (RFC 7672 §2.2), and the next hop sees
// nothing.
func TestDANEResolverFailureDefers(t *testing.T) {
	partner := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert})
	users := writeUsers(t, "alice", "s3cret")
	dead := freeLoopbackUDP(t)
	tr := startRelayWith(t, func(r *Relay) {
		r.connector.Resolver = &fakeDNS{
			mx: map[string][]*net.MX{"dane.example": {{Host: "mx.dane.example.", Pref: 10}}},
			ip: map[string][]net.IPAddr{"mx.dane.example": {{IP: net.ParseIP("192.0.2.40")}}},
		}
		r.connector.Dialer = &transporttest.Dialer{Map: map[string]string{"192.0.2.40:25": partner.Addr}}
		r.dane.Resolver.Timeout = 200 * time.Millisecond
	}, "-users", users, "-dane-resolver", dead, "-default-tls", "may", "-retry", "1h")

	c := tr.dialTLS(t, "submission")
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "alice@localhost", []string{"dest@dane.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a deferred attempt", 30*time.Second, func() bool {
		msgs, err := tr.queue.List(t.Context())
		return err == nil && len(msgs) == 1 && msgs[0].Recipients[0].Attempts == 1
	})
	msgs, _ := tr.queue.List(t.Context())
	r := msgs[0].Recipients[0]
	if r.State != transport.Deferred || r.LastError == nil || r.LastError.Code/100 != 4 {
		t.Fatalf("recipient after DANE lookup failure: %+v %+v", r, r.LastError)
	}
	t.Logf("deferred with: %s", r.LastError.Reply())
	if !strings.Contains(r.LastError.Message, "policy lookup failed") {
		t.Fatalf("deferred for another reason: %s", r.LastError.Reply())
	}
	// The queue logs the attempt just after recording it.
	waitFor(t, "the queue's attempt log line", 30*time.Second, func() bool {
		return contains(tr.logs.String(), `msg="delivery attempt" part=queue`, "result=deferred", "next_retry=", "4.4.3") == nil
	})
	if partner.Connections() != 0 {
		t.Fatalf("next hop contacted although the DANE policy is unknown")
	}
}

// freeLoopbackUDP returns a loopback UDP address where nothing answers.
func freeLoopbackUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// daneWorld is a destination dane.example whose MX mx.dane.example
// (192.0.2.40, mapped to a loopback transporttest server) publishes a TLSA
// record (RFC 7672), all answered with the AD bit by a loopback fake
// validating resolver.
type daneWorld struct {
	dns    *fakedns.Server
	mx     *transporttest.Server
	dialer *transporttest.Dialer
}

// newDANEWorld publishes a DANE-EE record (3 1 1, RFC 7672 §3.1.1) that
// matches the MX's certificate, or, with match false, one that does not.
func newDANEWorld(t *testing.T, match bool) *daneWorld {
	t.Helper()
	w := &daneWorld{}
	// The MX certificate is from a CA nobody trusts: only DANE can verify it.
	w.mx = transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.dane.example", Cert: transporttest.GoodCert})
	data, err := dane.Association(w.mx.Certificate.Leaf, dane.SelectorSPKI, dane.MatchSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !match {
		data = make([]byte, 32)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
	}
	w.dns = fakedns.Start(t, map[string]fakedns.Zone{
		"dane.example":              {AD: true, RRs: []dns.RR{fakedns.MX(10, "mx.dane.example")}},
		"mx.dane.example":           {AD: true, RRs: []dns.RR{fakedns.A("192.0.2.40")}},
		"_25._tcp.mx.dane.example.": {AD: true, RRs: []dns.RR{fakedns.TLSA(3, 1, 1, data)}},
	})
	w.dialer = &transporttest.Dialer{Map: map[string]string{"192.0.2.40:25": w.mx.Addr}}
	return w
}

// start runs a relay with -dane-resolver pointing at the fake resolver,
// -default-tls may and -tlsrpt. Only the dialer (documentation address to
// loopback) and an empty root pool (no PKIX trust) are test seams; the DANE
// policy and TLS-RPT store reach the Connector through the relay's own
// wiring.
func (w *daneWorld) start(t *testing.T, args ...string) (*testRelay, *smtp.Client) {
	t.Helper()
	users := writeUsers(t, "alice", "s3cret")
	args = append([]string{"-users", users, "-dane-resolver", w.dns.Addr, "-default-tls", "may", "-tlsrpt", "-retry", "1h"}, args...)
	tr := startRelayWith(t, func(r *Relay) {
		r.connector.Dialer = w.dialer
		r.connector.RootCAs = x509.NewCertPool()
	}, args...)
	if tr.connector.DANE == nil || tr.connector.DANE != tr.dane {
		t.Fatal("-dane-resolver did not give the relay's DANE policy to the Connector")
	}
	c := tr.dialTLS(t, "submission")
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	return tr, c
}

// With -dane-resolver, an MX publishing a matching DANE-EE record gets the
// mail over TLS verified by DANE alone (no PKIX root trusts its
// certificate), with SNI set to the TLSA base domain, and TLS-RPT records
// one "tlsa" success.
func TestDANEEEDelivers(t *testing.T) {
	w := newDANEWorld(t, true)
	tr, c := w.start(t)
	if err := send(c, "alice@localhost", []string{"dest@dane.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery to mx.dane.example", 30*time.Second, func() bool { return len(w.mx.Messages()) == 1 })
	if m := w.mx.Messages()[0]; m.TLS == nil || m.TLS.ServerName != "mx.dane.example" {
		t.Fatalf("delivered with TLS %+v, want TLS with SNI mx.dane.example", m.TLS)
	}
	waitFor(t, "the attempt log line", 30*time.Second, func() bool { return connectorAttempts(tr, "dane.example") == 1 })
	if err := contains(tr.logs.String(), "policy=dane/dane", "verified=true"); err != nil {
		t.Fatal(err)
	}
	rec := tlsrptResults(t, tr)
	if len(rec) != 1 || rec[0].PolicyType != tlsrpt.PolicyTLSA || rec[0].ResultType != tlsrpt.ResultSuccess ||
		rec[0].PolicyDomain != "dane.example" || rec[0].ReceivingMXHostname != "mx.dane.example" ||
		len(rec[0].PolicyString) != 1 || !strings.HasPrefix(rec[0].PolicyString[0], "3 1 1 ") {
		t.Fatalf("TLS-RPT results %+v, want one tlsa success", rec)
	}
	if n := w.dns.Count("", "_25._tcp.mx.dane.example", dns.TypeTLSA); n == 0 {
		t.Fatal("the TLSA record was never asked for")
	}
}

// A TLSA record that does not match the MX's certificate stops the
// delivery before MAIL FROM (RFC 7672 §2.2: no fallback to plaintext or to
// unauthenticated TLS) and defers the recipient with 4.7.5; TLS-RPT
// records one "tlsa" validation failure.
func TestDANEMismatchDefersSendingNothing(t *testing.T) {
	w := newDANEWorld(t, false)
	tr, c := w.start(t)
	if err := send(c, "alice@localhost", []string{"dest@dane.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a deferred attempt", 30*time.Second, func() bool {
		msgs, err := tr.queue.List(t.Context())
		return err == nil && len(msgs) == 1 && msgs[0].Recipients[0].Attempts == 1
	})
	msgs, _ := tr.queue.List(t.Context())
	r := msgs[0].Recipients[0]
	if r.State != transport.Deferred || r.LastError == nil || r.LastError.EnhancedCode != "4.7.5" ||
		r.LastError.TLSFailure != policy.FailureValidation {
		t.Fatalf("recipient after a TLSA mismatch: %+v %+v", r, r.LastError)
	}
	if n := len(w.mx.Messages()); n != 0 {
		t.Fatalf("MX accepted %d messages despite the TLSA mismatch", n)
	}
	wire := w.mx.Seen()
	if !transporttest.Contains(wire, "EHLO relay.test", "STARTTLS") {
		t.Fatalf("the MX was not even reached; the test proves nothing:\n%s", wire)
	}
	if transporttest.Contains(wire, "MAIL FROM") || transporttest.Contains(wire, "RCPT TO") {
		t.Fatalf("envelope sent to the MX:\n%s", wire)
	}
	waitFor(t, "the attempt log line", 30*time.Second, func() bool { return connectorAttempts(tr, "dane.example") == 1 })
	rec := tlsrptResults(t, tr)
	if len(rec) != 1 || rec[0].PolicyType != tlsrpt.PolicyTLSA || rec[0].ResultType != policy.FailureValidation ||
		rec[0].ReceivingIP != "192.0.2.40" {
		t.Fatalf("TLS-RPT results %+v, want one tlsa validation-failure", rec)
	}
	if len(maildirFiles(t, tr.cfg, "alice@localhost", "new")) != 0 {
		t.Fatal("a DSN was sent for a deferred recipient")
	}
}
