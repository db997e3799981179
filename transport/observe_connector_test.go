package transport_test

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// TestConnectorObserver: Deliver reports one event per recipient with the
// outcome, TLS version and policy, and one per attempt that met a TLS
// failure, named with its RFC 8460 result type.
func TestConnectorObserver(t *testing.T) {
	cases := []struct {
		name       string
		cert       transporttest.CertKind
		level      policy.Level
		rcpts      []string
		deliveries []transport.DeliveryEvent
		failures   []transport.TLSFailureEvent
	}{
		{
			name: "delivered over verified TLS", cert: transporttest.GoodCert, level: policy.Verify,
			rcpts: []string{"a@example.test", "b@Example.TEST"},
			deliveries: []transport.DeliveryEvent{
				{Domain: "example.test", Status: transport.Delivered, TLSVersion: tls.VersionTLS13, Verified: true, Level: policy.Verify, Source: policy.SourceDefault},
				{Domain: "example.test", Status: transport.Delivered, TLSVersion: tls.VersionTLS13, Verified: true, Level: policy.Verify, Source: policy.SourceDefault},
			},
		},
		{
			name: "encrypt delivers unverified", cert: transporttest.WrongNameCert, level: policy.Encrypt,
			rcpts: []string{"a@example.test"},
			deliveries: []transport.DeliveryEvent{
				{Domain: "example.test", Status: transport.Delivered, TLSVersion: tls.VersionTLS13, Level: policy.Encrypt, Source: policy.SourceDefault},
			},
		},
		{
			name: "certificate host mismatch defers", cert: transporttest.WrongNameCert, level: policy.Verify,
			rcpts: []string{"a@example.test"},
			deliveries: []transport.DeliveryEvent{
				{Domain: "example.test", Status: transport.Deferred, Level: policy.Verify, Source: policy.SourceDefault,
					TLSFailure: policy.FailureCertificateHostMismatch},
			},
			failures: []transport.TLSFailureEvent{{Domain: "example.test", Type: policy.FailureCertificateHostMismatch}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := transporttest.NewServer(t, transporttest.ServerConfig{Cert: tc.cert})
			e := newEnv(t)
			e.single(srv.Addr)
			rec := &transport.RecordingObserver{}
			c := e.connector(fixed(tc.level), srv)
			c.Observer = rec
			deliver(t, c, envelope(tc.rcpts...))
			got := rec.Snapshot()
			if !slices.Equal(got.Deliveries, tc.deliveries) {
				t.Errorf("deliveries =\n%+v\nwant\n%+v", got.Deliveries, tc.deliveries)
			}
			if !slices.Equal(got.TLSFailures, tc.failures) {
				t.Errorf("TLS failures = %+v, want %+v", got.TLSFailures, tc.failures)
			}
			if len(got.Sessions)+len(got.Auths)+len(got.Refusals) != 0 {
				t.Errorf("server events from a Connector: %+v", got)
			}
		})
	}
}

// TestConnectorObserverLatency: the duration reported covers the delivery.
func TestConnectorObserverLatency(t *testing.T) {
	srv := transporttest.NewTLSServer(t)
	e := newEnv(t)
	e.single(srv.Addr)
	rec := &transport.RecordingObserver{}
	c := e.connector(fixed(policy.Verify), srv)
	c.Observer = rec
	deliver(t, c, envelope("a@example.test"))
	if d := rec.Deliveries(); len(d) != 1 || d[0].Duration <= 0 {
		t.Fatalf("deliveries = %+v, want one with a duration", d)
	}
}
