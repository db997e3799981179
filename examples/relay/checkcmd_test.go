package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/fakedns"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// relayCheck runs "relay check ARGS" and returns the exit status, stdout
// and stderr.
func relayCheck(t *testing.T, setup func(*transport.Connector), args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	base := []string{"-data", t.TempDir(), "-hostname", "relay.test"}
	code := runCheck(ctx, append(base, args...), &out, &errOut, setup)
	return code, out.String(), errOut.String()
}

func noMAIL(t *testing.T, srv *transporttest.Server) {
	t.Helper()
	if m := srv.Mails(); len(m) != 0 || len(srv.Messages()) != 0 {
		t.Errorf("server saw MAIL %q during relay check", m)
	}
	if srv.Connections() == 0 {
		t.Error("relay check never connected: the test proves nothing")
	}
}

// relay check answers with the relay's own flags: a -route to a partner
// gateway under the -policy table's "secure" entry, verified with
// -outbound-ca, would deliver; the text names the table entry.
func TestCheckCommandRoute(t *testing.T) {
	partner := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, RequireTLS: true})
	ca := writeFile(t, "ca.pem", string(partner.CA.CertPEM))
	pol := writeFile(t, "tls_policy", fmt.Sprintf("[127.0.0.1]:%d secure match=%s\n", partner.Port, partner.Hostname))
	code, out, errOut := relayCheck(t, nil, "-route", fmt.Sprintf("partner.example=127.0.0.1:%d", partner.Port),
		"-policy", pol, "-outbound-ca", ca, "-log-level", "warn", "partner.example")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if err := contains(out, "check partner.example", "policy:     secure (static", fmt.Sprintf("route:      fixed next hop [127.0.0.1]:%d", partner.Port),
		"levels:     encrypt ok, verify FAILS (certificate-host-mismatch), secure ok", "verdict: delivered via 127.0.0.1: 250 2.0.0"); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
	noMAIL(t, partner)
}

// -json, also after the domain; a plaintext-only next hop under
// -default-tls encrypt is deferred with 4.7.4 (exit status 2), and with
// -on-tls-failure bounce bounced with 5.7.4 (exit status 3).
func TestCheckCommandJSON(t *testing.T) {
	plain := transporttest.NewPlainServer(t)
	route := fmt.Sprintf("legacy.example=127.0.0.1:%d", plain.Port)
	for _, tc := range []struct {
		args            []string
		code            int
		verdict, status string
	}{
		{nil, 2, "deferred", "4.7.4"},
		{[]string{"-on-tls-failure", "bounce"}, 3, "failed", "5.7.4"},
	} {
		args := append([]string{"-route", route, "-default-tls", "encrypt"}, tc.args...)
		code, out, errOut := relayCheck(t, nil, append(args, "legacy.example", "-json")...)
		if code != tc.code {
			t.Fatalf("%q: exit %d, want %d\n%s\n%s", tc.args, code, tc.code, out, errOut)
		}
		var rep transport.CheckReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if rep.Domain != "legacy.example" || rep.Outcome.Result.String() != tc.verdict || rep.Outcome.Status != tc.status ||
			rep.Outcome.TLSFailure != policy.FailureSTARTTLSNotSupported || rep.Policy.Level != "encrypt" || len(rep.Hosts) != 1 || rep.Hosts[0].STARTTLS {
			t.Errorf("%q: report %+v", tc.args, rep)
		}
	}
	noMAIL(t, plain)
}

// The MX path: -resolver answers the MX and address lookups; the MX host's
// certificate has expired, so -default-tls verify defers it (4.7.5).
func TestCheckCommandMX(t *testing.T) {
	mx := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.one.example", Cert: transporttest.ExpiredCert})
	ns := fakedns.Start(t, map[string]fakedns.Zone{
		"one.example":    {RRs: []dns.RR{fakedns.MX(10, "mx.one.example")}},
		"mx.one.example": {RRs: []dns.RR{fakedns.A("192.0.2.60")}},
	})
	ca := writeFile(t, "ca.pem", string(mx.CA.CertPEM))
	dialer := &transporttest.Dialer{Map: map[string]string{"192.0.2.60:25": mx.Addr}}
	code, out, errOut := relayCheck(t, func(c *transport.Connector) { c.Dialer = dialer },
		"-resolver", ns.Addr, "-outbound-ca", ca, "-log-format", "json", "one.example")
	if code != 2 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if err := contains(out, "mx:         mx.one.example; DNSSEC no", "mx.one.example [192.0.2.60]:25 preference 10",
		"verify FAILS (certificate-expired)", "verdict: deferred: 451 4.7.5"); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
	if ns.Count("", "one.example", dns.TypeMX) == 0 {
		t.Error("the MX was not looked up at -resolver")
	}
	// The Connector's line for the attempt, in -log-format json.
	var line map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(errOut), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("-log-format json wrote a line that is not JSON: %v: %q", err, l)
		}
		if m["msg"] == "check attempt" {
			line = m
		}
	}
	if line == nil || line["mx"] != "mx.one.example" || line["tls_failure"] != "certificate-expired" || line["outcome"] != "deferred" {
		t.Errorf("check attempt line %v in:\n%s", line, errOut)
	}
	noMAIL(t, mx)
}

func TestCheckCommandUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"a.example", "b.example"}, {"not a domain"}, {"localhost"}, {"-local-domains", "corp.example", "CORP.example."}} {
		code, _, errOut := relayCheck(t, nil, args...)
		if code != 1 || !strings.Contains(errOut, "relay check") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// -log-format selects slog's JSON or text handler; anything else is
// refused by name.
func TestLogFormatFlag(t *testing.T) {
	for _, tc := range []struct {
		format string
		json   bool
	}{{"", false}, {"text", false}, {"json", true}} {
		args := []string{"-data", t.TempDir(), "-hostname", "relay.test"}
		if tc.format != "" {
			args = append(args, "-log-format", tc.format)
		}
		cfg, err := parseFlags(args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		var buf bytes.Buffer
		newLogger(cfg, &buf).Info("delivery attempt", "queue_id", "q1", "verified", true)
		var m map[string]any
		isJSON := json.Unmarshal(buf.Bytes(), &m) == nil
		if isJSON != tc.json {
			t.Errorf("%q: line %q, want JSON %v", tc.format, buf.String(), tc.json)
		}
		if tc.json && (m["msg"] != "delivery attempt" || m["queue_id"] != "q1" || m["verified"] != true) {
			t.Errorf("%q: line %v", tc.format, m)
		}
		if !tc.json && !strings.Contains(buf.String(), `msg="delivery attempt" queue_id=q1 verified=true`) {
			t.Errorf("%q: line %q", tc.format, buf.String())
		}
	}
	if _, err := parseFlags([]string{"-data", t.TempDir(), "-hostname", "relay.test", "-log-format", "xml"}, &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "-log-format") {
		t.Errorf("-log-format xml: err = %v", err)
	}
}

// -timeout bounds the whole check: a next hop that accepts and never
// greets is reported deferred when it expires, long before the 5-minute
// greeting timeout of RFC 5321 §4.5.3.2.1.
func TestCheckCommandTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	start := time.Now()
	code, out, errOut := relayCheck(t, nil, "-route", "silent.example="+l.Addr().String(), "-timeout", "300ms", "silent.example")
	if code != 2 || time.Since(start) > 10*time.Second {
		t.Fatalf("exit %d after %v\n%s\n%s", code, time.Since(start), out, errOut)
	}
	if err := contains(out, "verdict: deferred: 451 4.4.2 no greeting from 127.0.0.1"); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}

// With -dane-resolver the check is DANE-aware as delivery is: the MX set
// and the host's TLSA records are DNSSEC-validated. Under -default-tls may
// DANE decides: a record that does not match the certificate defers
// (4.7.5), the matching one delivers, and a REQUIRETLS message could go
// (authenticated MX set, DANE-verified TLS, REQUIRETLS advertised). Under
// -default-tls verify the relay's own level outranks DANE (as an explicit
// verify does in Postfix): the report says so, and the mismatching record
// does not stop delivery.
func TestCheckCommandDANE(t *testing.T) {
	mx := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.dane.example", Cert: transporttest.GoodCert, RequireTLS: true})
	ca := writeFile(t, "ca.pem", string(mx.CA.CertPEM))
	good, err := dane.Association(mx.Certificate.Leaf, dane.SelectorSPKI, dane.MatchSHA256)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, level     string
		data            []byte
		code            int
		verdict         transport.Status
		status, source  string
		daneOK, hostRTL bool
	}{
		{"mismatch", "may", make([]byte, 32), checkDefer, transport.Deferred, "4.7.5", "dane", false, false},
		{"match", "may", good, checkDeliver, transport.Delivered, "2.0.0", "dane", true, true},
		{"verify outranks dane", "verify", make([]byte, 32), checkDeliver, transport.Delivered, "2.0.0", "default", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fakedns.Start(t, map[string]fakedns.Zone{
				"dane.example":              {AD: true, RRs: []dns.RR{fakedns.MX(10, "mx.dane.example")}},
				"mx.dane.example":           {AD: true, RRs: []dns.RR{fakedns.A("192.0.2.40")}},
				"_25._tcp.mx.dane.example.": {AD: true, RRs: []dns.RR{fakedns.TLSA(3, 1, 1, tc.data)}},
			})
			dialer := &transporttest.Dialer{Map: map[string]string{"192.0.2.40:25": mx.Addr}}
			code, out, errOut := relayCheck(t, func(c *transport.Connector) { c.Dialer = dialer },
				"-dane-resolver", ns.Addr, "-outbound-ca", ca, "-default-tls", tc.level, "-log-level", "error", "dane.example", "-json")
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, errOut)
			}
			var rep transport.CheckReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if rep.Outcome.Result != tc.verdict || rep.Outcome.Status != tc.status || string(rep.Policy.Source) != tc.source || !rep.MX.DNSSEC ||
				len(rep.Hosts) != 1 || rep.Hosts[0].DANE == nil || len(rep.Hosts[0].DANE.TLSA) != 1 || rep.Hosts[0].TLS == nil {
				t.Fatalf("report %+v", rep)
			}
			h := rep.Hosts[0]
			for _, l := range h.TLS.Levels {
				if want := l.Level != "dane" || tc.daneOK; l.OK != want {
					t.Errorf("level %s ok=%v, want %v (%s)", l.Level, l.OK, want, l.Error)
				}
			}
			if !rep.RequireTLS.Possible || h.RequireTLS != tc.hostRTL {
				t.Errorf("REQUIRETLS: group %+v host %v, want possible and host %v", rep.RequireTLS, h.RequireTLS, tc.hostRTL)
			}
		})
	}
	noMAIL(t, mx)
}
