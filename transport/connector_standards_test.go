package transport_test

// Cross-package tests of the standards-grade outbound policy: MTA-STS
// (a real mtasts.Client against a local HTTPS policy host), DANE (a real
// dane.Policy against a loopback fake resolver that sets AD per zone),
// REQUIRETLS and TLS-RPT recording, all through transport.Connector to
// transporttest servers with real TLS.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// stdWorld is one fake internet: a DNS resolver on loopback, a dialer that
// maps documentation addresses to loopback servers, a TLS-RPT store.
type stdWorld struct {
	t      *testing.T
	dns    *fakedns.Server
	dialer *transporttest.Dialer
	store  *tlsrpt.FileStore
}

func newStdWorld(t *testing.T) *stdWorld {
	return &stdWorld{
		t:      t,
		dns:    fakedns.Start(t, nil),
		dialer: &transporttest.Dialer{Map: map[string]string{}},
		store:  &tlsrpt.FileStore{Dir: t.TempDir()},
	}
}

// mx publishes domain → host (preference 10) → ip, served by srv; ad sets
// the AD bit on the MX and address answers.
func (w *stdWorld) mx(domain, host, ip string, srv *transporttest.Server, ad bool) {
	w.dns.Set(domain, fakedns.Zone{AD: ad, RRs: []dns.RR{fakedns.MX(10, host)}})
	w.dns.Set(host, fakedns.Zone{AD: ad, RRs: []dns.RR{fakedns.A(ip)}})
	if srv != nil {
		w.dialer.Map[ip+":25"] = srv.Addr
	}
}

// tlsa publishes host's TLSA RRset at _25._tcp.<host>.
func (w *stdWorld) tlsa(host string, ad bool, rrs ...dns.RR) {
	w.dns.Set("_25._tcp."+host, fakedns.Zone{AD: ad, RRs: rrs})
}

func (w *stdWorld) danePolicy(mandatory bool) *dane.Policy {
	return &dane.Policy{Resolver: &dane.Resolver{Addr: w.dns.Addr, Timeout: 2 * time.Second}, Mandatory: mandatory}
}

func (w *stdWorld) connector(pol policy.Policy, d *dane.Policy, roots *x509.CertPool) *transport.Connector {
	if roots == nil {
		roots = x509.NewCertPool() // nothing is PKIX-trusted unless a test says so
	}
	return &transport.Connector{
		Hostname: clientName,
		Policy:   pol,
		DANE:     d,
		TLSRPT:   w.store,
		Resolver: w.dns.Resolver(),
		Dialer:   w.dialer,
		RootCAs:  roots,
		Shuffle:  func(int, func(i, j int)) {},
		Timeouts: transport.ConnectorTimeouts{Connect: 5 * time.Second, Greeting: 10 * time.Second, Command: 10 * time.Second, Data: 10 * time.Second},
	}
}

// results returns every TLS-RPT result recorded.
func (w *stdWorld) results() []tlsrpt.Result {
	w.t.Helper()
	var out []tlsrpt.Result
	now := time.Now()
	err := w.store.Results(context.Background(), now.Add(-48*time.Hour), now.Add(48*time.Hour), func(r tlsrpt.Result) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// wantOneResult asserts that exactly one TLS-RPT result was recorded and
// returns it.
func (w *stdWorld) wantOneResult(typ tlsrpt.PolicyType, result policy.FailureType) tlsrpt.Result {
	w.t.Helper()
	rs := w.results()
	if len(rs) != 1 {
		w.t.Fatalf("TLS-RPT results = %+v, want exactly one", rs)
	}
	r := rs[0]
	if r.PolicyType != typ || r.ResultType != result {
		w.t.Fatalf("TLS-RPT result %s/%s, want %s/%s: %+v", r.PolicyType, r.ResultType, typ, result, r)
	}
	if r.ResultType != tlsrpt.ResultSuccess && (r.SendingMTAIP != "127.0.0.1" && r.ResultType != policy.FailureDANERequired) {
		w.t.Errorf("sending-mta-ip = %q, want 127.0.0.1", r.SendingMTAIP)
	}
	return r
}

func undelivered(t *testing.T, srv *transporttest.Server) {
	t.Helper()
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server accepted %d messages, want none", n)
	}
}

// stsHost serves an MTA-STS policy for domain over HTTPS on loopback and
// returns a Client that finds it through w's DNS.
func (w *stdWorld) stsHost(domain, body string) *mtasts.Client {
	w.t.Helper()
	ca := transporttest.MustCA("policy host CA")
	leaf := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mta-sts." + domain}})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte(body))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	srv.StartTLS()
	w.t.Cleanup(srv.Close)
	w.dns.Set("_mta-sts."+domain, fakedns.Zone{RRs: []dns.RR{fakedns.TXT("v=STSv1; id=1;")}})
	return &mtasts.Client{
		Resolver: w.dns.Resolver(),
		RootCAs:  ca.Pool,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != "mta-sts."+domain+":443" {
				return nil, errors.New("test refuses to dial " + addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Listener.Addr().String())
		},
	}
}

func stsBody(mode string, mx ...string) string {
	b := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		b += "mx: " + m + "\r\n"
	}
	return b + "max_age: 86400\r\n"
}

func TestMTASTSEnforceThroughConnector(t *testing.T) {
	// An MX not matching the policy: TestMTASTSMXMismatchReported.
	t.Run("invalid certificate", func(t *testing.T) {
		w := newStdWorld(t)
		srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.WrongNameCert})
		w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
		sts := w.stsHost("sts.example", stsBody("enforce", "mx.sts.example"))
		c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
		r := deliver(t, c, envelope("user@sts.example")).Recipients[0]
		wantTLSFailure(t, r, transport.Deferred, "4.7.5", transport.ErrCertificate, policy.FailureCertificateHostMismatch)
		undelivered(t, srv)
		rep := w.wantOneResult(tlsrpt.PolicySTS, policy.FailureCertificateHostMismatch)
		if rep.PolicyDomain != "sts.example" || rep.ReceivingMXHostname != "mx.sts.example" || rep.ReceivingIP != "192.0.2.20" {
			t.Errorf("result details %+v", rep)
		}
		if !slices.Equal(rep.MXHost, []string{"mx.sts.example"}) || !slices.Contains(rep.PolicyString, "mode: enforce") {
			t.Errorf("policy-string %q mx-host %q", rep.PolicyString, rep.MXHost)
		}
	})
	t.Run("testing mode delivers and records", func(t *testing.T) {
		w := newStdWorld(t)
		srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.UntrustedCert})
		w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
		sts := w.stsHost("sts.example", stsBody("testing", "mx.sts.example"))
		c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
		r := deliver(t, c, envelope("user@sts.example")).Recipients[0]
		wantDelivered(t, r)
		if r.TLSFailure != policy.FailureCertificateNotTrusted || r.TLS == nil || r.TLS.Verified {
			t.Errorf("TLSFailure %q TLS %+v, want certificate-not-trusted over unverified TLS", r.TLSFailure, r.TLS)
		}
		if r.Requirement.Mode != policy.Testing {
			t.Errorf("decision %s, want testing mode", r.Requirement)
		}
		w.wantOneResult(tlsrpt.PolicySTS, policy.FailureCertificateNotTrusted)
	})
	t.Run("testing mode keeps the encrypt floor", func(t *testing.T) {
		w := newStdWorld(t)
		srv := transporttest.NewPlainServer(t)
		w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
		sts := w.stsHost("sts.example", stsBody("testing", "mx.sts.example"))
		c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.Encrypt}}, nil, nil)
		r := deliver(t, c, envelope("user@sts.example")).Recipients[0]
		wantTLSFailure(t, r, transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered, policy.FailureSTARTTLSNotSupported)
		undelivered(t, srv)
		assertNoPlaintextTransaction(t, "plaintext server", srv.Seen())
		w.wantOneResult(tlsrpt.PolicySTS, policy.FailureSTARTTLSNotSupported)
	})
}

// daneServer starts a STARTTLS server for host with a certificate from ca
// (nil: its own CA).
func daneServer(t *testing.T, host string, ca *transporttest.CA, requireTLS bool) *transporttest.Server {
	return transporttest.NewServer(t, transporttest.ServerConfig{Hostname: host, Cert: transporttest.GoodCert, CA: ca, RequireTLS: requireTLS})
}

func eeRecord(t *testing.T, srv *transporttest.Server) dns.RR {
	t.Helper()
	data, err := dane.Association(srv.Certificate.Leaf, dane.SelectorSPKI, dane.MatchSHA256)
	if err != nil {
		t.Fatal(err)
	}
	return fakedns.TLSA(3, 1, 1, data)
}

func TestDANEThroughConnector(t *testing.T) {
	const host = "mx.dane.example"
	dplus := func(w *stdWorld, mandatory bool) (*policy.Standard, *dane.Policy) {
		d := w.danePolicy(mandatory)
		return &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}, d
	}
	// DANE is given to the Connector, or only to the Standard, whose DANE
	// member the Connector then takes (policy.DANEMember): configured once.
	for _, explicit := range []bool{true, false} {
		t.Run(fmt.Sprintf("DANE-EE match (Connector.DANE set: %v)", explicit), func(t *testing.T) {
			w := newStdWorld(t)
			srv := daneServer(t, host, nil, false)
			w.mx("dane.example", host, "192.0.2.30", srv, true)
			w.tlsa(host, true, eeRecord(t, srv))
			pol, d := dplus(w, false)
			if !explicit {
				d = nil
			}
			res := deliver(t, w.connector(pol, d, nil), envelope("user@dane.example"))
			r := res.Recipients[0]
			wantDelivered(t, r)
			if r.TLS == nil || !r.TLS.Verified || r.TLS.ServerName != host {
				t.Errorf("TLS %+v, want verified with SNI %s", r.TLS, host)
			}
			if r.Requirement.Level != policy.DANE || r.Requirement.Source != policy.SourceDANE || !r.Requirement.MXAuthenticated {
				t.Errorf("decision %s (MX authenticated %v)", r.Requirement, r.Requirement.MXAuthenticated)
			}
			if len(res.Attempts) != 1 || !res.Attempts[0].DANE {
				t.Errorf("attempts %+v, want one DANE attempt", res.Attempts)
			}
			rep := w.wantOneResult(tlsrpt.PolicyTLSA, tlsrpt.ResultSuccess)
			if len(rep.PolicyString) != 1 || !strings.HasPrefix(rep.PolicyString[0], "3 1 1 ") {
				t.Errorf("policy-string %q", rep.PolicyString)
			}
		})
	}
	t.Run("DANE configured once, in policy.Outbound: a mismatch is refused", func(t *testing.T) {
		// A record that does not match: refused by the per-host check.
		w2 := newStdWorld(t)
		srv2 := daneServer(t, host, nil, false)
		w2.mx("dane.example", host, "192.0.2.30", srv2, true)
		w2.tlsa(host, true, fakedns.TLSA(3, 1, 1, make([]byte, 32)))
		out := &policy.Outbound{DANE: w2.danePolicy(false)}
		r := deliver(t, w2.connector(out, nil, nil), envelope("user@dane.example")).Recipients[0]
		if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrCertificate) {
			t.Errorf("mismatching TLSA through Outbound: %v %v, want deferred ErrCertificate", r.Status, r.Reply)
		}
		undelivered(t, srv2)
	})
	t.Run("DANE-TA match", func(t *testing.T) {
		w := newStdWorld(t)
		root := transporttest.MustCA("dane root")
		inter := root.MustIssue(transporttest.LeafOptions{CommonName: "dane intermediate", IsCA: true})
		ica, err := inter.AsCA()
		if err != nil {
			t.Fatal(err)
		}
		srv := daneServer(t, host, ica, false)
		data, err := dane.Association(inter.X509, dane.SelectorCert, dane.MatchSHA256)
		if err != nil {
			t.Fatal(err)
		}
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		w.tlsa(host, true, fakedns.TLSA(2, 0, 1, data))
		pol, d := dplus(w, false)
		r := deliver(t, w.connector(pol, d, nil), envelope("user@dane.example")).Recipients[0]
		wantDelivered(t, r)
		if r.TLS == nil || !r.TLS.Verified {
			t.Errorf("TLS %+v, want verified", r.TLS)
		}
		w.wantOneResult(tlsrpt.PolicyTLSA, tlsrpt.ResultSuccess)
	})
	t.Run("mismatch defers and sends nothing", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		other := make([]byte, 32)
		rand.Read(other)
		w.tlsa(host, true, fakedns.TLSA(3, 1, 1, other))
		pol, d := dplus(w, false)
		// The server's certificate is PKIX-valid for its name: DANE must
		// not fall back to the WebPKI.
		r := deliver(t, w.connector(pol, d, srv.RootCAs()), envelope("user@dane.example")).Recipients[0]
		wantTLSFailure(t, r, transport.Deferred, "4.7.5", transport.ErrCertificate, policy.FailureValidation)
		undelivered(t, srv)
		rep := w.wantOneResult(tlsrpt.PolicyTLSA, policy.FailureValidation)
		if rep.ReceivingMXHostname != host || rep.ReceivingIP != "192.0.2.30" {
			t.Errorf("result details %+v", rep)
		}
	})
	t.Run("AD bit absent: no DANE", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, false)
		other := make([]byte, 32)
		rand.Read(other)
		w.tlsa(host, false, fakedns.TLSA(3, 1, 1, other)) // would not match
		pol, d := dplus(w, false)
		res := deliver(t, w.connector(pol, d, nil), envelope("user@dane.example"))
		r := res.Recipients[0]
		wantDelivered(t, r) // may: opportunistic TLS, certificate unchecked
		if r.TLS == nil || r.TLS.Verified || res.Attempts[0].DANE {
			t.Errorf("TLS %+v DANE %v, want unverified opportunistic TLS", r.TLS, res.Attempts[0].DANE)
		}
		if r.Requirement.Source != policy.SourceDefault || !strings.Contains(r.Requirement.Reason, "dane does not apply") {
			t.Errorf("decision %s", r.Requirement)
		}
		w.wantOneResult(tlsrpt.PolicyNoPolicyFound, tlsrpt.ResultSuccess)
	})
	t.Run("AD bit absent falls to MTA-STS", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, false)
		other := make([]byte, 32)
		rand.Read(other)
		w.tlsa(host, false, fakedns.TLSA(3, 1, 1, other))
		sts := w.stsHost("dane.example", stsBody("enforce", host))
		d := w.danePolicy(false)
		pol := &policy.Standard{DANE: d, MTASTS: sts, Default: policy.Fixed{Level: policy.May}}
		r := deliver(t, w.connector(pol, d, srv.RootCAs()), envelope("user@dane.example")).Recipients[0]
		wantDelivered(t, r)
		if r.TLS == nil || !r.TLS.Verified || r.Requirement.Source != policy.SourceMTASTS {
			t.Errorf("TLS %+v decision %s, want PKIX-verified under mta-sts", r.TLS, r.Requirement)
		}
		w.wantOneResult(tlsrpt.PolicySTS, tlsrpt.ResultSuccess)
	})
	t.Run("dane-only without TLSA fails", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		w.dns.SetNXAD(true) // no TLSA: authenticated denial
		pol, d := dplus(w, true)
		r := deliver(t, w.connector(pol, d, srv.RootCAs()), envelope("user@dane.example")).Recipients[0]
		if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrDANE) || r.TLSFailure != policy.FailureDANERequired {
			t.Fatalf("got %v %v %q, want deferred dane-required", r.Status, r.Reply, r.TLSFailure)
		}
		if d := w.dialer.Dialed(); len(d) != 0 {
			t.Errorf("dialled %v", d)
		}
		w.wantOneResult(tlsrpt.PolicyTLSA, policy.FailureDANERequired)
	})
	t.Run("TLSA lookup failure defers", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		w.dns.Set("_25._tcp."+host, fakedns.Zone{ServFail: true})
		d := w.danePolicy(false)
		// DANE alone in the Connector (the Policy is a plain default): the
		// failed lookup still makes the host unusable.
		r := deliver(t, w.connector(policy.Fixed{Level: policy.May}, d, nil), envelope("user@dane.example")).Recipients[0]
		if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrDANE) {
			t.Fatalf("got %v %v, want deferred", r.Status, r.Reply)
		}
		if d := w.dialer.Dialed(); len(d) != 0 {
			t.Errorf("dialled %v", d)
		}
	})
	t.Run("only unusable records: TLS required", func(t *testing.T) {
		w := newStdWorld(t)
		srv := transporttest.NewPlainServer(t)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		w.tlsa(host, true, fakedns.TLSA(1, 1, 1, make([]byte, 32))) // PKIX-EE: unusable for SMTP
		pol, d := dplus(w, false)
		r := deliver(t, w.connector(pol, d, nil), envelope("user@dane.example")).Recipients[0]
		wantTLSFailure(t, r, transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered, policy.FailureSTARTTLSNotSupported)
		assertNoPlaintextTransaction(t, "plaintext server", srv.Seen())
	})
	t.Run("TLS-Required: No ignores DANE", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		other := make([]byte, 32)
		rand.Read(other)
		w.tlsa(host, true, fakedns.TLSA(3, 1, 1, other)) // would not match
		pol, d := dplus(w, false)
		e := envelope("user@dane.example")
		e.TLSRequiredNo = true // RFC 8689 §4.2.2
		c := w.connector(pol, d, nil)
		var logBuf bytes.Buffer
		c.Logger = slogJSON(&logBuf)
		res := deliver(t, c, e)
		r := res.Recipients[0]
		wantDelivered(t, r)
		if r.TLS == nil || r.TLS.Verified || res.Attempts[0].DANE {
			t.Errorf("TLS %+v DANE %v, want TLS attempted, unverified, DANE not applied", r.TLS, res.Attempts[0].DANE)
		}
		if !strings.Contains(logBuf.String(), "TLS-Required: No header: DANE not applied") {
			t.Errorf("the relaxation was not logged:\n%s", logBuf.String())
		}
	})
	t.Run("no DANE lookup per host: TLSA from the policy fail closed", func(t *testing.T) {
		// Neither Connector.DANE nor a DANE member in the Policy (a Policy
		// of one's own that hands over TLSA records).
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		w.tlsa(host, true, eeRecord(t, srv))
		pol, _ := dplus(w, false)
		r := deliver(t, w.connector(policy.Func(pol.Lookup), nil, nil), envelope("user@dane.example")).Recipients[0]
		if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrDANE) {
			t.Fatalf("got %v %v, want deferred ErrDANE", r.Status, r.Reply)
		}
		undelivered(t, srv)
	})
}

// mixedHosts is a DNSSEC-signed mixed.example with two MX hosts: mx1,
// preferred, publishes TLSA records but is down; mx2 has no TLSA records
// (authenticated denial) and is a fixture server with the given
// certificate.
func mixedHosts(t *testing.T, second transporttest.CertKind) (*stdWorld, *transporttest.Server) {
	w := newStdWorld(t)
	w.dns.Set("mixed.example", fakedns.Zone{AD: true, RRs: []dns.RR{fakedns.MX(10, "mx1.mixed.example"), fakedns.MX(20, "mx2.mixed.example")}})
	w.dns.Set("mx1.mixed.example", fakedns.Zone{AD: true, RRs: []dns.RR{fakedns.A("192.0.2.41")}})
	w.dns.Set("mx2.mixed.example", fakedns.Zone{AD: true, RRs: []dns.RR{fakedns.A("192.0.2.42")}})
	w.dns.SetNXAD(true)
	w.tlsa("mx1.mixed.example", true, fakedns.TLSA(3, 1, 1, make([]byte, 32)))
	w.dialer.Map["192.0.2.41:25"] = closedAddr(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx2.mixed.example", Cert: second})
	w.dialer.Map["192.0.2.42:25"] = srv.Addr
	return w, srv
}

// DANE takes precedence over MTA-STS only where it applies: with DANE on
// the preferred MX host and an enforced MTA-STS policy, the second host,
// without TLSA records, is still held to MTA-STS (verified certificate,
// listed in the policy), never opportunistic.
func TestDANEAndMTASTSMixedHosts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		second    transporttest.CertKind
		delivered bool
	}{
		{"second host verified under MTA-STS", transporttest.GoodCert, true},
		{"second host plaintext-only: not used", transporttest.NoTLS, false},
		{"second host wrong name: not used", transporttest.WrongNameCert, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, srv := mixedHosts(t, tc.second)
			sts := w.stsHost("mixed.example", stsBody("enforce", "*.mixed.example"))
			d := w.danePolicy(false)
			pol := &policy.Standard{DANE: d, MTASTS: sts, Default: policy.Fixed{Level: policy.May}}
			res := deliver(t, w.connector(pol, d, srv.RootCAs()), envelope("user@mixed.example"))
			r := res.Recipients[0]
			if r.Requirement.Level != policy.DANE || r.Requirement.WithoutTLSA != policy.Verify {
				t.Errorf("decision %s (without TLSA: %s)", r.Requirement, r.Requirement.WithoutTLSA)
			}
			if tc.delivered {
				wantDelivered(t, r)
				if r.TLS == nil || !r.TLS.Verified || r.RemoteMTA.Host != "mx2.mixed.example" {
					t.Errorf("TLS %+v via %s, want verified via mx2", r.TLS, r.RemoteMTA)
				}
				var sts int
				for _, x := range w.results() {
					if x.PolicyType == tlsrpt.PolicySTS && x.ResultType == tlsrpt.ResultSuccess && x.ReceivingMXHostname == "mx2.mixed.example" {
						sts++
					}
				}
				if sts != 1 {
					t.Errorf("TLS-RPT results %+v, want one sts success for mx2", w.results())
				}
				return
			}
			if r.Status != transport.Deferred {
				t.Fatalf("status %v (%v), want deferred", r.Status, r.Reply)
			}
			undelivered(t, srv)
			if tc.second == transporttest.NoTLS {
				assertNoPlaintextTransaction(t, "mx2", srv.Seen())
			}
		})
	}
}

// An encrypt that DANE outranks (the default level, or a static entry)
// still holds for the MX hosts without TLSA records: with DANE on the
// preferred host, which is down, the second host gets the message only
// over TLS, never in plaintext (policy.Requirement.WithoutTLSA).
func TestDANEMixedHostsKeepEncrypt(t *testing.T) {
	static := policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: policy.Encrypt, Source: policy.SourceStatic}, nil
	})
	for _, tc := range []struct {
		name      string
		std       func(d *dane.Policy) *policy.Standard
		second    transporttest.CertKind
		delivered bool
	}{
		{"default encrypt, second host plaintext-only", func(d *dane.Policy) *policy.Standard {
			return &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.Encrypt}}
		}, transporttest.NoTLS, false},
		{"static encrypt, second host plaintext-only", func(d *dane.Policy) *policy.Standard {
			return &policy.Standard{DANE: d, Static: static, Default: policy.Fixed{Level: policy.May}}
		}, transporttest.NoTLS, false},
		{"default encrypt, second host with TLS (any certificate)", func(d *dane.Policy) *policy.Standard {
			return &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.Encrypt}}
		}, transporttest.WrongNameCert, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, srv := mixedHosts(t, tc.second)
			d := w.danePolicy(false)
			res := deliver(t, w.connector(tc.std(d), d, srv.RootCAs()), envelope("user@mixed.example"))
			r := res.Recipients[0]
			if r.Requirement.Level != policy.DANE || r.Requirement.WithoutTLSA != policy.Encrypt {
				t.Errorf("decision %s (without TLSA: %s)", r.Requirement, r.Requirement.WithoutTLSA)
			}
			if tc.delivered {
				wantDelivered(t, r)
				if r.TLS == nil || r.RemoteMTA.Host != "mx2.mixed.example" {
					t.Errorf("TLS %+v via %s, want TLS via mx2", r.TLS, r.RemoteMTA)
				}
				return
			}
			if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrSTARTTLSNotOffered) {
				t.Fatalf("status %v (%v), want deferred: STARTTLS not offered", r.Status, r.Reply)
			}
			undelivered(t, srv)
			assertNoPlaintextTransaction(t, "mx2", srv.Seen())
		})
	}
}

func TestREQUIRETLSEndToEnd(t *testing.T) {
	const host = "mx.dane.example"
	rt := func() *transport.Envelope { e := envelope("user@dane.example"); e.RequireTLS = true; return e }
	want530 := func(t *testing.T, r transport.RecipientResult) {
		t.Helper()
		if r.Status != transport.Failed || r.Reply == nil || r.Reply.Code != 550 || r.Reply.EnhancedCode.String() != "5.7.30" ||
			!errors.Is(r.Reply, transport.ErrRequireTLS) {
			t.Fatalf("got %v %v, want permanent 550 5.7.30", r.Status, r.Reply)
		}
	}
	t.Run("refused without authenticated MX", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, true)
		w.mx("dane.example", host, "192.0.2.30", srv, false) // no AD
		w.tlsa(host, false, eeRecord(t, srv))
		d := w.danePolicy(false)
		// Static verify with a PKIX-valid certificate: not enough, the MX
		// set is not authenticated (RFC 8689 §4.2.1).
		pol := &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.Verify}}
		want530(t, deliver(t, w.connector(pol, d, srv.RootCAs()), rt()).Recipients[0])
		if d := w.dialer.Dialed(); len(d) != 0 {
			t.Errorf("dialled %v", d)
		}
		undelivered(t, srv)
	})
	t.Run("refused by a next hop lacking the extension", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, false)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		w.tlsa(host, true, eeRecord(t, srv))
		d := w.danePolicy(false)
		pol := &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}
		want530(t, deliver(t, w.connector(pol, d, nil), rt()).Recipients[0])
		if len(w.dialer.Dialed()) == 0 {
			t.Errorf("the next hop was never asked")
		}
		undelivered(t, srv)
	})
	t.Run("delivered over DANE", func(t *testing.T) {
		w := newStdWorld(t)
		srv := daneServer(t, host, nil, true)
		w.mx("dane.example", host, "192.0.2.30", srv, true)
		w.tlsa(host, true, eeRecord(t, srv))
		d := w.danePolicy(false)
		pol := &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}
		r := deliver(t, w.connector(pol, d, nil), rt()).Recipients[0]
		wantDelivered(t, r)
		m := srv.Messages()
		if len(m) != 1 || !m[0].Envelope.RequireTLS {
			t.Fatalf("next hop did not see REQUIRETLS on MAIL FROM: %+v", m)
		}
	})
	t.Run("delivered under MTA-STS enforce", func(t *testing.T) {
		w := newStdWorld(t)
		srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert, RequireTLS: true})
		w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
		sts := w.stsHost("sts.example", stsBody("enforce", "mx.sts.example"))
		c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
		e := envelope("user@sts.example")
		e.RequireTLS = true
		r := deliver(t, c, e).Recipients[0]
		wantDelivered(t, r)
		if m := srv.Messages(); len(m) != 1 || !m[0].Envelope.RequireTLS {
			t.Fatalf("next hop did not see REQUIRETLS on MAIL FROM: %+v", m)
		}
	})
	t.Run("refused under MTA-STS testing", func(t *testing.T) {
		w := newStdWorld(t)
		srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert, RequireTLS: true})
		w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
		sts := w.stsHost("sts.example", stsBody("testing", "mx.sts.example"))
		c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
		e := envelope("user@sts.example")
		e.RequireTLS = true
		want530(t, deliver(t, c, e).Recipients[0])
		undelivered(t, srv)
	})
}

// A day of attempts (DANE success and mismatch, an MTA-STS certificate
// failure, an opportunistic success) aggregated into RFC 8460 reports that
// pass tlsrpt's strict validation, with the counts and details the attempts
// produced.
func TestTLSRPTReportFromAttempts(t *testing.T) {
	w := newStdWorld(t)
	const host = "mx.dane.example"
	good := daneServer(t, host, nil, false)
	w.mx("dane.example", host, "192.0.2.30", good, true)
	w.tlsa(host, true, eeRecord(t, good))
	d := w.danePolicy(false)
	pol := &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}
	wantDelivered(t, deliver(t, w.connector(pol, d, nil), envelope("a@dane.example")).Recipients[0])
	other := make([]byte, 32)
	rand.Read(other)
	w.tlsa(host, true, fakedns.TLSA(3, 1, 1, other))
	if r := deliver(t, w.connector(pol, d, nil), envelope("b@dane.example")).Recipients[0]; r.Status != transport.Deferred {
		t.Fatalf("mismatch: %v", r.Status)
	}

	bad := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.ExpiredCert})
	w.mx("sts.example", "mx.sts.example", "192.0.2.20", bad, false)
	sts := w.stsHost("sts.example", stsBody("enforce", "mx.sts.example"))
	c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, bad.RootCAs())
	if r := deliver(t, c, envelope("c@sts.example")).Recipients[0]; r.TLSFailure != policy.FailureCertificateExpired {
		t.Fatalf("expired: %v %q", r.Status, r.TLSFailure)
	}

	agg := &tlsrpt.Aggregator{Store: w.store, OrganizationName: "Sender Org", ContactInfo: "tlsrpt@sender.example",
		NewReportID: func() string { return "test-report" }}
	reps, err := agg.Reports(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	byDomain := map[string]*tlsrpt.Report{}
	for _, r := range reps {
		if err := r.Validate(true); err != nil {
			t.Errorf("report for %s: %v", r.PolicyDomain(), err)
		}
		// Round trip through the wire form, as a receiver would read it.
		gz, err := r.Gzip()
		if err != nil {
			t.Fatal(err)
		}
		back, err := tlsrpt.ParseReport(strings.NewReader(string(gz)))
		if err != nil || back.Validate(true) != nil {
			t.Fatalf("parse back: %v", err)
		}
		byDomain[r.PolicyDomain()] = back
	}
	// The success and the failure were under different TLSA records, so
	// they are two policies of one report.
	dr := byDomain["dane.example"]
	if dr == nil || len(dr.Policies) != 2 {
		t.Fatalf("dane.example report: %+v", dr)
	}
	var succ, fail int64
	var fd []tlsrpt.FailureDetails
	for _, p := range dr.Policies {
		if p.Policy.Type != tlsrpt.PolicyTLSA {
			t.Errorf("policy type %q", p.Policy.Type)
		}
		succ += p.Summary.TotalSuccessfulSessionCount
		fail += p.Summary.TotalFailureSessionCount
		fd = append(fd, p.FailureDetails...)
	}
	if succ != 1 || fail != 1 || len(fd) != 1 || fd[0].ResultType != policy.FailureValidation ||
		fd[0].ReceivingMXHostname != host || fd[0].ReceivingIP != "192.0.2.30" || fd[0].SendingMTAIP != "127.0.0.1" ||
		fd[0].FailedSessionCount != 1 {
		t.Errorf("dane.example: %d successes, %d failures, details %+v", succ, fail, fd)
	}
	sr := byDomain["sts.example"]
	if sr == nil || len(sr.Policies) != 1 {
		t.Fatalf("sts.example report: %+v", sr)
	}
	sp := sr.Policies[0]
	if sp.Policy.Type != tlsrpt.PolicySTS || !slices.Contains(sp.Policy.String, "mode: enforce") ||
		!slices.Equal([]string(sp.Policy.MXHost), []string{"mx.sts.example"}) || sp.Summary.TotalFailureSessionCount != 1 ||
		len(sp.FailureDetails) != 1 || sp.FailureDetails[0].ResultType != policy.FailureCertificateExpired {
		t.Errorf("sts.example policy %+v", sp)
	}
	if sr.OrganizationName != "Sender Org" || sr.ContactInfo != "tlsrpt@sender.example" || sr.ReportID != "test-report" {
		t.Errorf("report header %+v", sr)
	}
}
