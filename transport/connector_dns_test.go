package transport_test

// Tests of how the Connector uses DNS: one resolver setting for every
// lookup of a delivery (Connector.DNS), each query sent once per Deliver
// call although the policy lookup and the Connector both need the answers,
// and what a failed DNSSEC lookup and an MTA-STS MX mismatch leave in the
// log and in TLS-RPT. The only resolver is internal/fakedns on loopback,
// which counts the queries it receives.

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/internal/syncbuf"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// logTo returns a logger writing text lines at level Info and above to buf.
func logTo(buf *syncbuf.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// attemptLine returns the "delivery attempt" log line, failing unless
// there is exactly one.
func attemptLine(t *testing.T, logs string) string {
	t.Helper()
	var lines []string
	for l := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(l, `msg="delivery attempt"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d delivery attempt lines, want 1:\n%s", len(lines), logs)
	}
	return lines[0]
}

// onlyResult asserts that exactly one TLS-RPT result of the given types was
// recorded and returns it. Unlike wantOneResult it accepts a result without
// a sending IP: these failures happen before any connection.
func (w *stdWorld) onlyResult(typ tlsrpt.PolicyType, result policy.FailureType) tlsrpt.Result {
	w.t.Helper()
	rs := w.results()
	if len(rs) != 1 || rs[0].PolicyType != typ || rs[0].ResultType != result {
		w.t.Fatalf("TLS-RPT results = %+v, want exactly one %s/%s", rs, typ, result)
	}
	return rs[0]
}

// A validating resolver answers SERVFAIL for the only MX host's TLSA
// RRset (bogus DNSSEC data). The policy lookup (policy.Standard asking the
// dane.Policy) fails and the recipient is deferred; the attempt is logged
// with the domain and the MX host the failure concerns, and
// TLS-RPT records dnssec-invalid for it (RFC 8460 §4.3.2.1), under policy
// type tlsa.
func TestDANEBogusTLSALoggedAndReported(t *testing.T) {
	const host = "mx.bogus.example"
	w := newStdWorld(t)
	srv := daneServer(t, host, nil, false)
	w.mx("bogus.example", host, "192.0.2.31", srv, true)
	w.dns.Set("_25._tcp."+host, fakedns.Zone{ServFail: true})
	d := w.danePolicy(false)
	c := w.connector(&policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}, d, nil)
	var logs syncbuf.Buffer
	c.Logger = logTo(&logs)

	r := deliver(t, c, envelope("user@bogus.example")).Recipients[0]
	if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrPolicyLookup) || !errors.Is(r.Reply, dane.ErrLookupFailed) {
		t.Fatalf("got %v %v, want deferred for the failed DANE lookup", r.Status, r.Reply)
	}
	undelivered(t, srv)
	line := attemptLine(t, logs.String())
	for _, want := range []string{"domain=bogus.example", "mx=" + host, "tls_failure=dnssec-invalid"} {
		if !strings.Contains(line, want) {
			t.Errorf("attempt line lacks %q:\n%s", want, line)
		}
	}
	rep := w.onlyResult(tlsrpt.PolicyTLSA, policy.FailureDNSSECInvalid)
	if rep.PolicyDomain != "bogus.example" || rep.ReceivingMXHostname != host {
		t.Errorf("result %+v, want policy domain bogus.example and receiving MX %s", rep, host)
	}
	if r.TLSFailure != policy.FailureType(policy.FailureDNSSECInvalid) {
		t.Errorf("recipient TLSFailure %q, want dnssec-invalid", r.TLSFailure)
	}
}

// A failed MX lookup (SERVFAIL for the domain itself) names the domain;
// no MX host is known.
func TestDANEBogusMXLoggedAndReported(t *testing.T) {
	w := newStdWorld(t)
	w.dns.Set("bogusmx.example", fakedns.Zone{ServFail: true})
	d := w.danePolicy(false)
	c := w.connector(&policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}, d, nil)
	var logs syncbuf.Buffer
	c.Logger = logTo(&logs)
	r := deliver(t, c, envelope("user@bogusmx.example")).Recipients[0]
	if r.Status != transport.Deferred || !errors.Is(r.Reply, dane.ErrLookupFailed) {
		t.Fatalf("got %v %v, want deferred for the failed MX lookup", r.Status, r.Reply)
	}
	if line := attemptLine(t, logs.String()); !strings.Contains(line, "domain=bogusmx.example") {
		t.Errorf("attempt line lacks the domain:\n%s", line)
	}
	rep := w.onlyResult(tlsrpt.PolicyTLSA, policy.FailureDNSSECInvalid)
	if rep.PolicyDomain != "bogusmx.example" || rep.ReceivingMXHostname != "" {
		t.Errorf("result %+v", rep)
	}
	if n := w.dns.Count("", "bogusmx.example", dns.TypeMX); n != 1 {
		t.Errorf("%d MX queries, want 1", n)
	}
}

// One Deliver call sends each DNS query once, although policy.Standard
// (through the dane.Policy) and the Connector (through Connector.DANE)
// both need the MX, address and TLSA answers.
func TestDANEQueriesOncePerDelivery(t *testing.T) {
	const host = "mx.dane.example"
	w := newStdWorld(t)
	srv := daneServer(t, host, nil, false)
	w.mx("dane.example", host, "192.0.2.30", srv, true)
	w.tlsa(host, true, eeRecord(t, srv))
	d := w.danePolicy(false)
	c := w.connector(&policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}, d, nil)
	for i := 1; i <= 2; i++ {
		wantDelivered(t, deliver(t, c, envelope("user@dane.example")).Recipients[0])
		for _, q := range []struct {
			name string
			typ  uint16
		}{{"dane.example", dns.TypeMX}, {host, dns.TypeA}, {host, dns.TypeAAAA}, {"_25._tcp." + host, dns.TypeTLSA}} {
			// One query per delivery; a second Deliver call asks again.
			if n := w.dns.Count("", q.name, q.typ); n != i {
				t.Errorf("after %d deliveries: %d %s %s queries, want %d", i, n, q.name, dns.TypeToString[q.typ], i)
			}
		}
	}
}

// An MTA-STS policy whose mx patterns do not match the MX (RFC 8461 §4.1).
// In testing mode the mail is delivered (§5: testing mode does not
// enforce), but the session failed policy validation, so TLS-RPT records a
// failure, not a success. In enforce mode nothing is dialled, the
// recipient is deferred, and TLS-RPT records one validation-failure per
// refused MX host, so that the domain learns that its policy blocks its
// mail.
func TestMTASTSMXMismatchReported(t *testing.T) {
	for _, mode := range []string{"testing", "enforce"} {
		t.Run(mode, func(t *testing.T) {
			w := newStdWorld(t)
			srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.elsewhere.example", Cert: transporttest.GoodCert})
			w.mx("sts.example", "mx.elsewhere.example", "192.0.2.20", srv, false)
			sts := w.stsHost("sts.example", stsBody(mode, "mx.sts.example"))
			c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
			r := deliver(t, c, envelope("user@sts.example")).Recipients[0]
			if r.Requirement.Source != policy.SourceMTASTS || r.Requirement.Level != policy.Verify {
				t.Errorf("decision %s, want mta-sts verify", r.Requirement)
			}
			rep := w.onlyResult(tlsrpt.PolicySTS, policy.FailureValidation)
			if rep.PolicyDomain != "sts.example" || rep.ReceivingMXHostname != "mx.elsewhere.example" ||
				!strings.Contains(rep.FailureReasonCode, "mtasts-policy-mx-mismatch") ||
				!slices.Equal(rep.MXHost, []string{"mx.sts.example"}) || !slices.Contains(rep.PolicyString, "mode: "+mode) {
				t.Errorf("result %+v", rep)
			}
			if mode == "testing" {
				wantDelivered(t, r)
				if r.TLS == nil || !r.TLS.Verified {
					t.Fatalf("TLS %+v: the certificate is valid for the MX, so only the MX mismatch can fail", r.TLS)
				}
				if rep.ReceivingIP != "192.0.2.20" || rep.SendingMTAIP != "127.0.0.1" {
					t.Errorf("session addresses in %+v", rep)
				}
				return
			}
			if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrNoMX) || r.TLSFailure != policy.FailureValidation {
				t.Fatalf("got %v %v (%q), want deferred with ErrNoMX and validation-failure", r.Status, r.Reply, r.TLSFailure)
			}
			if d := w.dialer.Dialed(); len(d) != 0 {
				t.Errorf("dialled %v", d)
			}
			undelivered(t, srv)
		})
	}
}
