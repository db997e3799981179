package transport_test

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// listenLoopback443 listens for HTTPS on port 443 of a random address in
// 127.0.0.0/8, where the MTA-STS policy host of RFC 8461 §3.3 is always
// dialled. Port 443 needs privileges; the test is skipped without them.
func listenLoopback443(t *testing.T) (net.Listener, string) {
	t.Helper()
	var lastErr error
	for range 20 {
		ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(256), 1+rand.IntN(250))
		l, err := net.Listen("tcp4", ip+":443")
		if err == nil {
			return l, ip
		}
		lastErr = err
	}
	t.Skipf("cannot listen on port 443 of a loopback address: %v", lastErr)
	return nil, ""
}

// Connector.DNS is the only resolver: the MX and address lookups, the
// MTA-STS TXT record and the policy host's address all go to it (the
// mtasts.Client has neither Resolver nor DialContext of its own), counted
// per name at the fake server; the policy fetched through it applies.
func TestConnectorDNSCoversMTASTS(t *testing.T) {
	l, policyIP := listenLoopback443(t)
	ca := transporttest.MustCA("policy host CA")
	leaf := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mta-sts.one.example"}})
	https := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, stsBody("enforce", "mx.one.example"))
	}))
	https.Listener.Close()
	https.Listener = l
	https.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	https.StartTLS()
	t.Cleanup(https.Close)

	w := newStdWorld(t)
	srv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.one.example", Cert: transporttest.GoodCert})
	w.mx("one.example", "mx.one.example", "192.0.2.50", srv, false)
	w.dns.Set("_mta-sts.one.example", fakedns.Zone{RRs: []dns.RR{fakedns.TXT("v=STSv1; id=1;")}})
	w.dns.Set("mta-sts.one.example", fakedns.Zone{RRs: []dns.RR{fakedns.A(policyIP)}})

	sts := &mtasts.Client{RootCAs: ca.Pool, FetchTimeout: 10 * time.Second}
	c := w.connector(&policy.Standard{MTASTS: sts, Default: policy.Fixed{Level: policy.May}}, nil, srv.RootCAs())
	c.Resolver = nil
	c.DNS = &dane.Resolver{Addr: w.dns.Addr, Timeout: 2 * time.Second}

	r := deliver(t, c, envelope("user@one.example")).Recipients[0]
	wantDelivered(t, r)
	if r.Requirement.Source != policy.SourceMTASTS || r.Requirement.Mode != policy.Enforce {
		t.Errorf("decision %s, want the enforced mta-sts policy", r.Requirement)
	}
	for _, q := range []struct {
		name string
		typ  uint16
	}{{"one.example", dns.TypeMX}, {"mx.one.example", dns.TypeA}, {"_mta-sts.one.example", dns.TypeTXT}, {"mta-sts.one.example", dns.TypeA}} {
		if n := w.dns.Count("", q.name, q.typ); n != 1 {
			t.Errorf("%d %s %s queries at the configured resolver, want 1", n, q.name, dns.TypeToString[q.typ])
		}
	}
}
