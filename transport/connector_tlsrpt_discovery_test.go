package transport_test

// TLS-RPT for MTA-STS policy discovery failures (RFC 8460 §4.3.2.2): a
// domain that publishes an MTA-STS TXT record whose policy cannot be
// fetched, is invalid or is served without a WebPKI-valid certificate is
// delivered to as if it published nothing (RFC 8461 §5), or under its
// valid cached policy (RFC 8461 §5.1), and the failure is recorded under
// policy type "sts" besides the session's own result. Real mtasts.Client
// against a local HTTPS policy host, real Connector, real TLS.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// stsCtl is a policy host whose answer a test changes between deliveries.
type stsCtl struct {
	w      *stdWorld
	domain string
	mu     sync.Mutex
	status int
	body   string
}

func (h *stsCtl) set(status int, body string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status, h.body = status, body
}

// publish sets the "_mta-sts" TXT record with id.
func (h *stsCtl) publish(id string) {
	h.w.dns.Set("_mta-sts."+h.domain, fakedns.Zone{RRs: []dns.RR{fakedns.TXT("v=STSv1; id=" + id + ";")}})
}

// stsPolicyHost serves domain's policy over HTTPS on loopback, as the
// handler's status and body say, publishes the TXT record with id=1 and
// returns a Client that finds the host through w's DNS. With trusted
// false the Client does not trust the host's certificate (its CA is not
// in RootCAs).
func (w *stdWorld) stsPolicyHost(domain string, trusted bool) (*mtasts.Client, *stsCtl) {
	w.t.Helper()
	h := &stsCtl{w: w, domain: domain, status: http.StatusOK}
	ca := transporttest.MustCA("policy host CA")
	leaf := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mta-sts." + domain}})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		status, body := h.status, h.body
		h.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || status == http.StatusNotFound {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		rw.WriteHeader(status)
		rw.Write([]byte(body))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	// The untrusted case makes the client abort handshakes; expected.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	w.t.Cleanup(srv.Close)
	h.publish("1")
	roots := ca.Pool
	if !trusted {
		roots = x509.NewCertPool()
	}
	return &mtasts.Client{
		Resolver: w.dns.Resolver(),
		RootCAs:  roots,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != "mta-sts."+domain+":443" {
				return nil, errors.New("test refuses to dial " + addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Listener.Addr().String())
		},
	}, h
}

// byType splits the recorded results into discovery failures (sts
// policy failures) and the others (sessions).
func splitResults(rs []tlsrpt.Result) (discovery, sessions []tlsrpt.Result) {
	for _, r := range rs {
		switch r.ResultType {
		case policy.FailureSTSPolicyFetch, policy.FailureSTSPolicyInvalid, policy.FailureSTSWebPKIInvalid:
			discovery = append(discovery, r)
		default:
			sessions = append(sessions, r)
		}
	}
	return discovery, sessions
}

// A published policy that cannot be used does not block delivery (the
// default level applies, RFC 8461 §5), and the store holds the RFC 8460
// §4.3.2.2 failure under policy type sts, with the session's own result
// under no-policy-found.
func TestTLSRPTRecordsSTSDiscoveryFailure(t *testing.T) {
	cases := []struct {
		name    string
		trusted bool
		status  int
		body    string
		want    policy.FailureType
		detail  string // in failure-reason-code
	}{
		{"policy host answers 404", true, http.StatusNotFound, "", policy.FailureSTSPolicyFetch, "404"},
		{"policy host answers 500", true, http.StatusInternalServerError, stsBody("enforce", "mx.sts.example"),
			policy.FailureSTSPolicyFetch, "500"},
		{"policy host certificate not trusted", false, http.StatusOK, stsBody("enforce", "mx.sts.example"),
			policy.FailureSTSWebPKIInvalid, "certificate"},
		{"invalid policy text", true, http.StatusOK, "version: STSv1\r\nmode: enforce-please\r\nmx: mx.sts.example\r\nmax_age: 86400\r\n",
			policy.FailureSTSPolicyInvalid, "mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newStdWorld(t)
			srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert})
			w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
			sts, h := w.stsPolicyHost("sts.example", tc.trusted)
			h.set(tc.status, tc.body)
			c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())

			r := deliver(t, c, envelope("user@sts.example")).Recipients[0]
			wantDelivered(t, r)
			if n := len(srv.Messages()); n != 1 {
				t.Fatalf("server has %d messages, want 1", n)
			}
			if r.Requirement.Source != policy.SourceDefault || r.Requirement.Level != policy.May {
				t.Errorf("decision %s, want the default level may", r.Requirement)
			}
			if r.TLS == nil {
				t.Errorf("delivered without TLS although STARTTLS was offered")
			}
			df := r.Requirement.DiscoveryFailures
			if len(df) != 1 || df[0].PolicyType != "sts" || df[0].ResultType != tc.want || df[0].PolicyString != nil {
				t.Errorf("Requirement.DiscoveryFailures = %+v, want one sts %s without policy", df, tc.want)
			}
			if !strings.Contains(r.Requirement.Reason, "sts policy discovery failed: "+string(tc.want)) {
				t.Errorf("reason %q does not name the failure", r.Requirement.Reason)
			}

			disc, sess := splitResults(w.results())
			if len(disc) != 1 {
				t.Fatalf("discovery failures recorded: %+v, want one", disc)
			}
			f := disc[0]
			if f.PolicyDomain != "sts.example" || f.PolicyType != tlsrpt.PolicySTS || f.ResultType != tc.want ||
				len(f.PolicyString) != 0 || len(f.MXHost) != 0 || f.ReceivingMXHostname != "" || f.ReceivingIP != "" {
				t.Errorf("discovery failure %+v", f)
			}
			if !strings.Contains(f.FailureReasonCode, tc.detail) || f.AdditionalInformation != "" {
				t.Errorf("failure-reason-code %q (want it to mention %q), additional-information %q",
					f.FailureReasonCode, tc.detail, f.AdditionalInformation)
			}
			if len(sess) != 1 || sess[0].PolicyType != tlsrpt.PolicyNoPolicyFound || sess[0].ResultType != tlsrpt.ResultSuccess ||
				sess[0].ReceivingMXHostname != "mx.sts.example" {
				t.Errorf("session results %+v, want one no-policy-found success", sess)
			}
		})
	}
}

// The failure is counted once per Deliver call for the domain, not once
// per MX session: here the first MX refuses the connection and the second
// takes the message. A second Deliver records a second failure.
func TestTLSRPTDiscoveryFailureOncePerDelivery(t *testing.T) {
	w := newStdWorld(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx2.sts.example", Cert: transporttest.GoodCert})
	w.dns.Set("sts.example", fakedns.Zone{RRs: []dns.RR{fakedns.MX(10, "mx1.sts.example"), fakedns.MX(20, "mx2.sts.example")}})
	w.dns.Set("mx1.sts.example", fakedns.Zone{RRs: []dns.RR{fakedns.A("192.0.2.21")}})
	w.dns.Set("mx2.sts.example", fakedns.Zone{RRs: []dns.RR{fakedns.A("192.0.2.22")}})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.dialer.Map["192.0.2.21:25"] = closed.Addr().String()
	closed.Close()
	w.dialer.Map["192.0.2.22:25"] = srv.Addr
	sts, h := w.stsPolicyHost("sts.example", true)
	h.set(http.StatusNotFound, "")
	c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())

	res := deliver(t, c, envelope("a@sts.example", "b@sts.example"))
	wantDelivered(t, res.Recipients[0])
	wantDelivered(t, res.Recipients[1])
	if len(res.Attempts) != 2 || res.Attempts[0].RemoteMTA.Host != "mx1.sts.example" || res.Attempts[0].Err == nil {
		t.Fatalf("attempts %+v, want a refused mx1 then mx2", res.Attempts)
	}
	disc, sess := splitResults(w.results())
	if len(disc) != 1 || disc[0].ResultType != policy.FailureSTSPolicyFetch {
		t.Fatalf("discovery failures %+v, want one for one delivery", disc)
	}
	if len(sess) != 1 || sess[0].ReceivingMXHostname != "mx2.sts.example" {
		t.Errorf("session results %+v, want mx2's success only (a refused connection is no TLS result)", sess)
	}

	wantDelivered(t, deliver(t, c, envelope("c@sts.example")).Recipients[0])
	if disc, _ := splitResults(w.results()); len(disc) != 2 {
		t.Errorf("after a second delivery: %d discovery failures, want 2", len(disc))
	}
}

// A valid cached enforce policy stays in force when its refresh fails
// (RFC 8461 §5.1): delivery still goes only to matching MX hosts with a
// verified certificate, and the failure is recorded under the cached
// policy. The aggregated report passes strict validation and shows the
// failure and the sessions under that one sts policy.
func TestTLSRPTCachedPolicyRefreshFailure(t *testing.T) {
	w := newStdWorld(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert})
	w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
	sts, h := w.stsPolicyHost("sts.example", true)
	good := stsBody("enforce", "mx.sts.example")
	h.set(http.StatusOK, good)
	c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())

	first := deliver(t, c, envelope("a@sts.example")).Recipients[0]
	wantDelivered(t, first)
	if first.Requirement.Source != policy.SourceMTASTS || first.Requirement.DiscoveryFailures != nil {
		t.Fatalf("first delivery: %s, failures %+v", first.Requirement, first.Requirement.DiscoveryFailures)
	}
	if disc, _ := splitResults(w.results()); len(disc) != 0 {
		t.Fatalf("a successful discovery recorded failures: %+v", disc)
	}

	// The domain announces a new policy id, but the policy host is broken.
	h.publish("2")
	h.set(http.StatusNotFound, "")
	r := deliver(t, c, envelope("b@sts.example")).Recipients[0]
	wantDelivered(t, r)
	req := r.Requirement
	if req.Source != policy.SourceMTASTS || req.Level != policy.Verify || req.Mode != policy.Enforce ||
		!slices.Equal(req.MXPatterns, []string{"mx.sts.example"}) {
		t.Errorf("decision %s, want the cached mta-sts enforce policy", req)
	}
	if r.TLS == nil || !r.TLS.Verified {
		t.Errorf("TLS %+v, want a verified certificate under the cached enforce policy", r.TLS)
	}
	if len(req.DiscoveryFailures) != 1 || req.DiscoveryFailures[0].ResultType != policy.FailureSTSPolicyFetch ||
		!slices.Contains(req.DiscoveryFailures[0].PolicyString, "mode: enforce") {
		t.Errorf("DiscoveryFailures %+v", req.DiscoveryFailures)
	}

	// Enforcement continues: an MX host outside the cached patterns is
	// not used, and the refresh failure is recorded again.
	other := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.elsewhere.example", Cert: transporttest.GoodCert})
	w.mx("sts.example", "mx.elsewhere.example", "192.0.2.40", other, false)
	r = deliver(t, c, envelope("c@sts.example")).Recipients[0]
	if r.Status != transport.Deferred || !errors.Is(r.Reply, transport.ErrNoMX) {
		t.Fatalf("non-matching MX under the cached policy: %v %v, want deferred with ErrNoMX", r.Status, r.Reply)
	}
	undelivered(t, other)

	disc, sess := splitResults(w.results())
	if len(disc) != 2 {
		t.Fatalf("discovery failures %+v, want two (second and third delivery)", disc)
	}
	for _, f := range disc {
		if f.PolicyType != tlsrpt.PolicySTS || f.ResultType != policy.FailureSTSPolicyFetch ||
			!slices.Contains(f.PolicyString, "mode: enforce") || !slices.Equal(f.MXHost, []string{"mx.sts.example"}) ||
			!strings.Contains(f.FailureReasonCode, "cached policy id=1") {
			t.Errorf("discovery failure %+v", f)
		}
	}
	// Two successes, and the refusal of the only MX host, which the
	// domain learns about as a validation-failure (RFC 8461 §4.1).
	mism := slices.IndexFunc(sess, func(r tlsrpt.Result) bool { return !r.Success() })
	if len(sess) != 3 || mism < 0 || slices.ContainsFunc(sess[mism+1:], func(r tlsrpt.Result) bool { return !r.Success() }) ||
		sess[mism].ResultType != policy.FailureValidation || sess[mism].ReceivingMXHostname != "mx.elsewhere.example" {
		t.Fatalf("session results %+v, want two successes and one validation-failure for mx.elsewhere.example", sess)
	}

	agg := &tlsrpt.Aggregator{Store: w.store, OrganizationName: "Sender Org", ContactInfo: "tlsrpt@sender.example",
		NewReportID: func() string { return "discovery-report" }}
	reps, err := agg.Reports(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 {
		t.Fatalf("%d reports, want one for sts.example", len(reps))
	}
	if err := reps[0].Validate(true); err != nil {
		t.Fatal(err)
	}
	gz, err := reps[0].Gzip()
	if err != nil {
		t.Fatal(err)
	}
	back, err := tlsrpt.ParseReport(strings.NewReader(string(gz)))
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(true); err != nil {
		t.Fatal(err)
	}
	if back.PolicyDomain() != "sts.example" || len(back.Policies) != 1 {
		t.Fatalf("report policies %+v, want one sts policy", back.Policies)
	}
	p := back.Policies[0]
	if p.Policy.Type != tlsrpt.PolicySTS || !slices.Contains(p.Policy.String, "mode: enforce") ||
		!slices.Equal([]string(p.Policy.MXHost), []string{"mx.sts.example"}) {
		t.Errorf("policy %+v", p.Policy)
	}
	if p.Summary.TotalSuccessfulSessionCount != 2 || p.Summary.TotalFailureSessionCount != 3 {
		t.Errorf("summary %+v, want 2 successes and 3 failures", p.Summary)
	}
	fetch := slices.IndexFunc(p.FailureDetails, func(d tlsrpt.FailureDetails) bool { return d.ResultType == policy.FailureSTSPolicyFetch })
	mismatch := slices.IndexFunc(p.FailureDetails, func(d tlsrpt.FailureDetails) bool { return d.ResultType == policy.FailureValidation })
	if len(p.FailureDetails) != 2 || fetch < 0 || mismatch < 0 ||
		p.FailureDetails[fetch].FailedSessionCount != 2 || p.FailureDetails[fetch].ReceivingMXHostname != "" ||
		p.FailureDetails[mismatch].FailedSessionCount != 1 || p.FailureDetails[mismatch].ReceivingMXHostname != "mx.elsewhere.example" {
		t.Errorf("failure details %+v", p.FailureDetails)
	}
}

// The report for a domain whose policy could not be fetched at all shows
// the failure under an sts policy without policy-string, next to the
// no-policy-found successes, and passes strict validation.
func TestTLSRPTReportShowsSTSFetchFailure(t *testing.T) {
	w := newStdWorld(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert})
	w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
	sts, h := w.stsPolicyHost("sts.example", true)
	h.set(http.StatusNotFound, "")
	c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
	for _, rcpt := range []string{"a@sts.example", "b@sts.example", "c@sts.example"} {
		wantDelivered(t, deliver(t, c, envelope(rcpt)).Recipients[0])
	}
	agg := &tlsrpt.Aggregator{Store: w.store, OrganizationName: "Sender Org", ContactInfo: "tlsrpt@sender.example"}
	reps, err := agg.Reports(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 {
		t.Fatalf("%d reports", len(reps))
	}
	if err := reps[0].Validate(true); err != nil {
		t.Fatal(err)
	}
	j, err := reps[0].JSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := tlsrpt.ParseReport(strings.NewReader(string(j)))
	if err != nil || back.Validate(true) != nil {
		t.Fatalf("parse back: %v", err)
	}
	var sp, none *tlsrpt.PolicyResult
	for i := range back.Policies {
		switch back.Policies[i].Policy.Type {
		case tlsrpt.PolicySTS:
			sp = &back.Policies[i]
		case tlsrpt.PolicyNoPolicyFound:
			none = &back.Policies[i]
		}
	}
	if sp == nil || none == nil || len(back.Policies) != 2 {
		t.Fatalf("policies %+v, want sts and no-policy-found", back.Policies)
	}
	if sp.Policy.Domain != "sts.example" || len(sp.Policy.String) != 0 || sp.Summary.TotalFailureSessionCount != 3 ||
		sp.Summary.TotalSuccessfulSessionCount != 0 || len(sp.FailureDetails) != 1 ||
		sp.FailureDetails[0].ResultType != policy.FailureSTSPolicyFetch || sp.FailureDetails[0].FailedSessionCount != 3 ||
		sp.FailureDetails[0].FailureReasonCode == "" {
		t.Errorf("sts policy %+v", sp)
	}
	if none.Summary.TotalSuccessfulSessionCount != 3 || none.Summary.TotalFailureSessionCount != 0 {
		t.Errorf("no-policy-found %+v", none)
	}
	if !strings.Contains(string(j), `"result-type": "sts-policy-fetch-error"`) || !strings.Contains(string(j), `"policy-type": "sts"`) {
		t.Errorf("report JSON lacks the sts failure:\n%s", j)
	}
}

// A cached policy in mode none whose domain announces a new id that cannot
// be fetched: no policy applies (RFC 8461 §8.3), delivery proceeds at the
// default level, and the fetch failure is still reported.
func TestTLSRPTCachedModeNoneRefreshFailure(t *testing.T) {
	w := newStdWorld(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert})
	w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
	sts, h := w.stsPolicyHost("sts.example", true)
	h.set(http.StatusOK, stsBody("none"))
	c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
	r := deliver(t, c, envelope("a@sts.example")).Recipients[0]
	wantDelivered(t, r)
	if r.Requirement.Source != policy.SourceDefault || r.Requirement.DiscoveryFailures != nil {
		t.Fatalf("mode none: %s, failures %+v", r.Requirement, r.Requirement.DiscoveryFailures)
	}
	h.publish("2")
	h.set(http.StatusServiceUnavailable, "")
	r = deliver(t, c, envelope("b@sts.example")).Recipients[0]
	wantDelivered(t, r)
	if r.Requirement.Source != policy.SourceDefault || r.Requirement.Level != policy.May {
		t.Errorf("decision %s, want the default may", r.Requirement)
	}
	disc, _ := splitResults(w.results())
	if len(disc) != 1 || disc[0].ResultType != policy.FailureSTSPolicyFetch || len(disc[0].PolicyString) != 0 ||
		!strings.Contains(disc[0].FailureReasonCode, "503") {
		t.Errorf("discovery failures %+v, want one fetch error without policy", disc)
	}
}

// A bare mtasts.Client as the Connector's only policy: its "no policy"
// answer falls to the strict default, and the discovery failure behind that
// answer is still recorded.
func TestTLSRPTDiscoveryFailureBareClient(t *testing.T) {
	w := newStdWorld(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.sts.example", Cert: transporttest.GoodCert})
	w.mx("sts.example", "mx.sts.example", "192.0.2.20", srv, false)
	sts, h := w.stsPolicyHost("sts.example", true)
	h.set(http.StatusNotFound, "")
	c := w.connector(sts, nil, srv.RootCAs())

	r := deliver(t, c, envelope("user@sts.example")).Recipients[0]
	wantDelivered(t, r)
	if r.Requirement.Source != policy.SourceDefault || r.Requirement.Level != policy.Verify {
		t.Errorf("decision %s, want the strict default verify", r.Requirement)
	}
	disc, sess := splitResults(w.results())
	if len(disc) != 1 || disc[0].PolicyType != tlsrpt.PolicySTS || disc[0].ResultType != policy.FailureSTSPolicyFetch ||
		disc[0].PolicyDomain != "sts.example" {
		t.Fatalf("discovery failures recorded: %+v, want one sts-policy-fetch-error for sts.example", disc)
	}
	if len(sess) != 1 || sess[0].ResultType != tlsrpt.ResultSuccess {
		t.Errorf("session results %+v, want one success", sess)
	}
}
