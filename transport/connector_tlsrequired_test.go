package transport_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// "TLS-Required: No" asks the sending MTA to ignore recipient-side
// policies such as MTA-STS and DANE (RFC 8689; Abstract). It does not let the
// message lower what the local administrator configured for the
// destination. These tests combine a real policy.Table with an enforced
// MTA-STS answer through policy.Standard and policy.Strictest, so that the
// published policy wins the combination (Source mta-sts) and the table
// entry survives only as Requirement.LocalFloor, and deliver through a
// STARTTLS-stripping proxy with the real Connector.

// stsEnforce answers as an enforced MTA-STS policy for mx.example.test
// (RFC 8461 §3.2), the shape *mtasts.Client returns.
func stsEnforce() policy.Policy {
	return policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: policy.Verify, MXPatterns: []string{"mx.example.test"},
			MXAuthenticated: true, PolicyString: []string{"version: STSv1", "mode: enforce", "mx: mx.example.test", "max_age: 86400"},
			Source: policy.SourceMTASTS, Reason: "mta-sts id=1 mode=enforce"}, nil
	})
}

func table(t *testing.T, text string) *policy.Table {
	t.Helper()
	tb, err := policy.ParseTable(strings.NewReader(text), "tls_policy")
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// combinations returns the ways a host application puts the table, the
// MTA-STS lookup and a may default together.
func combinations(t *testing.T, tableText string) map[string]policy.Policy {
	tb := table(t, tableText)
	return map[string]policy.Policy{
		"standard":  &policy.Standard{Static: tb, MTASTS: stsEnforce(), Default: policy.Fixed{Level: policy.May}},
		"strictest": policy.Combine(stsEnforce(), tb, policy.Fixed{Level: policy.May}),
	}
}

// A static "encrypt" entry outranked by MTA-STS enforce is still the
// administrator's requirement: with "TLS-Required: No" the message is
// relaxed to encrypt, not to may, so an attacker who strips STARTTLS
// gets nothing of the transaction (X.7.4, starttls-not-supported).
func TestTLSRequiredNoKeepsStaticEncryptUnderMTASTS(t *testing.T) {
	for name, pol := range combinations(t, "example.test encrypt\n") {
		t.Run(name, func(t *testing.T) {
			srv := transporttest.NewTLSServer(t)
			proxy := transporttest.NewStrippingProxy(t, srv.Addr)
			e := newEnv(t)
			e.single(proxy.Addr)
			c := e.connector(pol, srv)
			var logBuf bytes.Buffer
			c.Logger = slogJSON(&logBuf)
			env := envelope("user@example.test")
			env.TLSRequiredNo = true
			res := deliver(t, c, env)
			r := res.Recipients[0]
			wantTLSFailure(t, r, transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered, policy.FailureSTARTTLSNotSupported)
			assertNoPlaintextTransaction(t, "stripping proxy", proxy.Seen())
			if len(srv.Messages()) != 0 {
				t.Errorf("upstream received a message")
			}
			if r.Requirement.Source != policy.SourceMTASTS || r.Requirement.Level != policy.Verify ||
				r.Requirement.LocalFloor != policy.Encrypt {
				t.Errorf("requirement %s (local floor %s), want verify from mta-sts over a local encrypt",
					r.Requirement, r.Requirement.LocalFloor)
			}
			logs := logBuf.String()
			if !strings.Contains(logs, "TLS-Required: No") || !strings.Contains(logs, "relaxes verify (mta-sts) to encrypt") ||
				!strings.Contains(logs, "local floor encrypt") {
				t.Errorf("relaxation to the local floor not logged with both levels:\n%s", logs)
			}
		})
	}
}

// Where only the recipient side demands TLS (a static "may" entry, or no
// entry at all), the header relaxes MTA-STS enforce to may and the message
// goes through opportunistically: TLS-RPT reports (RFC 8460 §5.3) still
// reach a domain whose TLS is broken. Without the header the same path is
// refused, which shows the proxy really downgrades.
func TestTLSRequiredNoRelaxesPublishedPolicyAboveLocalMay(t *testing.T) {
	for _, tableText := range []string{"example.test may\n", "other.example encrypt\n"} {
		for name, pol := range combinations(t, tableText) {
			t.Run(name+"/"+strings.Fields(tableText)[1], func(t *testing.T) {
				srv := transporttest.NewTLSServer(t)
				proxy := transporttest.NewStrippingProxy(t, srv.Addr)
				e := newEnv(t)
				e.single(proxy.Addr)
				c := e.connector(pol, srv)

				// Control: no header, MTA-STS enforce holds.
				r := deliver(t, c, envelope("user@example.test")).Recipients[0]
				wantTLSFailure(t, r, transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered, policy.FailureSTARTTLSNotSupported)
				assertNoPlaintextTransaction(t, "stripping proxy", proxy.Seen())

				var logBuf bytes.Buffer
				c.Logger = slogJSON(&logBuf)
				env := envelope("user@example.test")
				env.TLSRequiredNo = true
				r = deliver(t, c, env).Recipients[0]
				wantDelivered(t, r)
				if r.TLS != nil {
					t.Errorf("TLS %+v through a stripping proxy", r.TLS)
				}
				if !transporttest.Contains(proxy.Seen(), bodyMarker) || len(srv.Messages()) != 1 {
					t.Errorf("message did not cross the proxy (%d upstream)", len(srv.Messages()))
				}
				if r.Requirement.Source != policy.SourceMTASTS || r.Requirement.LocalFloor > policy.May {
					t.Errorf("requirement %s (local floor %s), want mta-sts with no local TLS requirement",
						r.Requirement, r.Requirement.LocalFloor)
				}
				if logs := logBuf.String(); !strings.Contains(logs, "relaxes verify (mta-sts) to may") {
					t.Errorf("relaxation not logged:\n%s", logs)
				}
			})
		}
	}
}

// A local level of verify (or stricter) that ties with MTA-STS (the
// published policy is reported as applied) is not relaxed at all.
func TestTLSRequiredNoKeepsStaticVerifyUnderMTASTS(t *testing.T) {
	for name, pol := range combinations(t, "example.test verify\n") {
		t.Run(name, func(t *testing.T) {
			srv := transporttest.NewWrongNameServer(t)
			e := newEnv(t)
			e.single(srv.Addr)
			env := envelope("user@example.test")
			env.TLSRequiredNo = true
			r := deliver(t, e.connector(pol, srv), env).Recipients[0]
			wantTLSFailure(t, r, transport.Deferred, "4.7.5", transport.ErrCertificate, policy.FailureCertificateHostMismatch)
			if len(srv.Messages()) != 0 {
				t.Errorf("delivered to a server with the wrong name")
			}
		})
	}
}

// The same gap with a testing-mode MTA-STS policy: policy.Standard makes
// it the result (Source mta-sts, Mode testing) over the static entry, which
// becomes both Floor and LocalFloor. The header must not lower the
// enforced local encrypt either.
func TestTLSRequiredNoKeepsStaticEncryptUnderMTASTSTesting(t *testing.T) {
	stsTesting := policy.Func(func(_ context.Context, d string) (policy.Requirement, error) {
		return policy.Requirement{Domain: d, Level: policy.Verify, Mode: policy.Testing, MXPatterns: []string{"mx.example.test"},
			Source: policy.SourceMTASTS, Reason: "mta-sts id=1 mode=testing"}, nil
	})
	srv := transporttest.NewTLSServer(t)
	proxy := transporttest.NewStrippingProxy(t, srv.Addr)
	e := newEnv(t)
	e.single(proxy.Addr)
	pol := &policy.Standard{Static: table(t, "example.test encrypt\n"), MTASTS: stsTesting, Default: policy.Fixed{Level: policy.May}}
	env := envelope("user@example.test")
	env.TLSRequiredNo = true
	r := deliver(t, e.connector(pol, srv), env).Recipients[0]
	wantTLSFailure(t, r, transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered, policy.FailureSTARTTLSNotSupported)
	assertNoPlaintextTransaction(t, "stripping proxy", proxy.Seen())
	if len(srv.Messages()) != 0 {
		t.Errorf("upstream received a message")
	}
	if q := r.Requirement; q.Mode != policy.Testing || q.LocalFloor != policy.Encrypt {
		t.Errorf("requirement %s (local floor %s), want a testing policy over a local encrypt", q, q.LocalFloor)
	}
}

// DANE is a recipient-side policy too: a static "encrypt" entry that DANE
// (with DNSSEC-validated records) outranks is kept under "TLS-Required: No"
// (TLS still required, DANE not applied), while without a local entry the
// header relaxes DANE to may.
func TestTLSRequiredNoKeepsStaticEncryptUnderDANE(t *testing.T) {
	const host = "mx.dane.example"
	w := newStdWorld(t)
	srv := daneServer(t, host, nil, false)
	proxy := transporttest.NewStrippingProxy(t, srv.Addr)
	w.mx("dane.example", host, "192.0.2.30", nil, true)
	w.dialer.Map["192.0.2.30:25"] = proxy.Addr
	w.tlsa(host, true, eeRecord(t, srv))
	d := w.danePolicy(false)

	env := envelope("user@dane.example")
	env.TLSRequiredNo = true
	pol := &policy.Standard{DANE: d, Static: table(t, "dane.example encrypt\n"), Default: policy.Fixed{Level: policy.May}}
	res := deliver(t, w.connector(pol, d, nil), env)
	r := res.Recipients[0]
	wantTLSFailure(t, r, transport.Deferred, "4.7.4", transport.ErrSTARTTLSNotOffered, policy.FailureSTARTTLSNotSupported)
	assertNoPlaintextTransaction(t, "stripping proxy", proxy.Seen())
	undelivered(t, srv)
	if q := r.Requirement; q.Source != policy.SourceDANE || q.LocalFloor != policy.Encrypt {
		t.Errorf("requirement %s (local floor %s), want dane over a local encrypt", q, q.LocalFloor)
	}

	// No local entry: only the recipient side demands TLS; relaxed to may.
	pol = &policy.Standard{DANE: d, Default: policy.Fixed{Level: policy.May}}
	r = deliver(t, w.connector(pol, d, nil), env).Recipients[0]
	wantDelivered(t, r)
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("upstream has %d messages, want 1", n)
	}
}

// When the header is not honoured (a local verify), the log says so with
// both levels.
func TestTLSRequiredNoNotAppliedIsLogged(t *testing.T) {
	srv := transporttest.NewWrongNameServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	c := e.connector(combinations(t, "example.test verify\n")["standard"], srv)
	var logBuf bytes.Buffer
	c.Logger = slogJSON(&logBuf)
	env := envelope("user@example.test")
	env.TLSRequiredNo = true
	r := deliver(t, c, env).Recipients[0]
	if r.Status == transport.Delivered {
		t.Fatalf("delivered to a server with the wrong name")
	}
	if logs := logBuf.String(); !strings.Contains(logs, "TLS-Required: No header not applied: verify (mta-sts) kept, local floor verify") {
		t.Errorf("not logged:\n%s", logs)
	}
}
