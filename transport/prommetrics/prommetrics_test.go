package prommetrics

import (
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// gather registers m alone and returns every sample as
// `name{label="value",...}` → value (histograms: their _count and _sum).
func gather(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			key := func(suffix string) string {
				var ls []string
				for _, l := range s.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				return f.GetName() + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = s.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(s.GetHistogram().GetSampleCount())
				out[key("_sum")] = s.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

type fakeQueue queue.Depth

func (f fakeQueue) Depth() queue.Depth { return queue.Depth(f) }

// TestMapping: each event becomes exactly the samples listed, with the
// label values of the library's own types.
func TestMapping(t *testing.T) {
	cases := []struct {
		name    string
		observe func(m *Metrics)
		want    map[string]float64
	}{
		{"session", func(m *Metrics) {
			m.ObserveSession(transport.SessionEvent{Kind: transport.KindSubmission, TLSVersion: tls.VersionTLS13, Outcome: transport.SessionAccepted, Messages: 2})
		}, map[string]float64{`mailtls_smtp_sessions_total{listener="submission",outcome="accepted",tls_version="TLSv1.3"}`: 1}},
		{"plaintext session refused", func(m *Metrics) {
			m.ObserveSession(transport.SessionEvent{Kind: transport.KindMX, Outcome: transport.SessionRefused})
		}, map[string]float64{`mailtls_smtp_sessions_total{listener="mx",outcome="refused",tls_version="none"}`: 1}},
		{"auth", func(m *Metrics) {
			m.ObserveAuth(transport.AuthEvent{Kind: transport.KindSubmissions, Outcome: transport.AuthFailed})
			m.ObserveAuth(transport.AuthEvent{Kind: transport.KindSubmissions, Outcome: transport.AuthFailed})
			m.ObserveAuth(transport.AuthEvent{Kind: transport.KindSubmissions, Outcome: transport.AuthSucceeded})
		}, map[string]float64{
			`mailtls_smtp_auth_total{listener="submissions",result="failure"}`: 2,
			`mailtls_smtp_auth_total{listener="submissions",result="success"}`: 1,
		}},
		{"refusals", func(m *Metrics) {
			for _, r := range transport.RefusalReasons() {
				m.ObserveRefusal(transport.RefusalEvent{Kind: transport.KindMX, Reason: r})
			}
		}, map[string]float64{
			`mailtls_smtp_refusals_total{listener="mx",reason="no-starttls"}`:          1,
			`mailtls_smtp_refusals_total{listener="mx",reason="weak-tls"}`:             1,
			`mailtls_smtp_refusals_total{listener="mx",reason="plaintext-auth"}`:       1,
			`mailtls_smtp_refusals_total{listener="mx",reason="requiretls-plaintext"}`: 1,
			`mailtls_smtp_refusals_total{listener="mx",reason="connection-limit"}`:     1,
			`mailtls_smtp_refusals_total{listener="mx",reason="client-limit"}`:         1,
			`mailtls_smtp_refusals_total{listener="mx",reason="auth-rate-limit"}`:      1,
		}},
		{"delivery to a table domain", func(m *Metrics) {
			m.ObserveDelivery(transport.DeliveryEvent{Domain: "partner.example", Status: transport.Delivered, TLSVersion: tls.VersionTLS12,
				Verified: true, Level: policy.Secure, Source: policy.SourceStatic, Duration: 1500 * time.Millisecond})
		}, map[string]float64{
			`mailtls_deliveries_total{domain="partner.example",level="secure",source="static",status="delivered",tls_version="TLSv1.2",verified="true"}`: 1,
			`mailtls_delivery_duration_seconds_count{status="delivered"}`:                                                                                1,
			`mailtls_delivery_duration_seconds_sum{status="delivered"}`:                                                                                  1.5,
		}},
		{"delivery to any other domain", func(m *Metrics) {
			m.ObserveDelivery(transport.DeliveryEvent{Domain: "sub.partner.example", Status: transport.Deferred, Level: policy.Verify,
				Source: policy.SourceMTASTS, TLSFailure: policy.FailureCertificateExpired})
			m.ObserveDelivery(transport.DeliveryEvent{Domain: "random-1.example", Status: transport.Failed, Level: policy.DANEOnly})
		}, map[string]float64{
			`mailtls_deliveries_total{domain="other",level="verify",source="mta-sts",status="deferred",tls_version="none",verified="false"}`: 1,
			`mailtls_deliveries_total{domain="other",level="dane-only",source="none",status="failed",tls_version="none",verified="false"}`:   1,
			`mailtls_delivery_duration_seconds_count{status="deferred"}`:                                                                     1,
			`mailtls_delivery_duration_seconds_sum{status="deferred"}`:                                                                       0,
			`mailtls_delivery_duration_seconds_count{status="failed"}`:                                                                       1,
			`mailtls_delivery_duration_seconds_sum{status="failed"}`:                                                                         0,
		}},
		{"TLS failures by RFC 8460 result type", func(m *Metrics) {
			m.ObserveTLSFailure(transport.TLSFailureEvent{Domain: "partner.example", Type: policy.FailureSTARTTLSNotSupported})
			m.ObserveTLSFailure(transport.TLSFailureEvent{Domain: "elsewhere.example", Type: policy.FailureValidation, DANE: true})
		}, map[string]float64{
			`mailtls_tls_failures_total{domain="partner.example",result_type="starttls-not-supported"}`: 1,
			`mailtls_tls_failures_total{domain="other",result_type="validation-failure"}`:               1,
		}},
		{"DSNs by action", func(m *Metrics) {
			m.ObserveReport(queue.ReportEvent{Action: ndr.ActionFailed, Recipients: 3})
			m.ObserveReport(queue.ReportEvent{Action: ndr.ActionDelayed, Recipients: 1})
		}, map[string]float64{
			`mailtls_dsn_total{action="failed"}`:  1,
			`mailtls_dsn_total{action="delayed"}`: 1,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Options{Domains: []string{"partner.example"}})
			tc.observe(m)
			if got := gather(t, m); !maps.Equal(got, tc.want) {
				t.Errorf("samples:\n%s\nwant:\n%s", dump(got), dump(tc.want))
			}
		})
	}
}

func dump(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "  %s %g\n", k, m[k])
	}
	return b.String()
}

// TestQueueGauges: the depth is read at scrape time.
func TestQueueGauges(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	q := fakeQueue{Messages: 2, Oldest: now.Add(-90 * time.Second),
		Recipients: map[transport.Status]int{transport.Pending: 1, transport.Deferred: 4, transport.Delivered: 0}}
	m := New(Options{Namespace: "relay", Queue: q, Now: func() time.Time { return now }})
	want := map[string]float64{
		`relay_queue_recipients{state="pending"}`:   1,
		`relay_queue_recipients{state="deferred"}`:  4,
		`relay_queue_recipients{state="delivered"}`: 0,
		`relay_queue_messages{}`:                    2,
		`relay_queue_oldest_message_age_seconds{}`:  90,
	}
	if got := gather(t, m); !maps.Equal(got, want) {
		t.Errorf("samples:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	empty := New(Options{Queue: fakeQueue{Recipients: map[transport.Status]int{}}})
	if got := gather(t, empty)[`mailtls_queue_oldest_message_age_seconds{}`]; got != 0 {
		t.Errorf("empty queue: oldest age %g, want 0", got)
	}
}

func TestTableDomains(t *testing.T) {
	tab, err := policy.ParseTable(strings.NewReader("partner.example secure\n.sub.example verify\n[relay.example]:587 encrypt\n* may\nbank.example dane-only\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := TableDomains(tab), []string{"partner.example", "bank.example"}; !slices.Equal(got, want) {
		t.Errorf("TableDomains = %q, want %q", got, want)
	}
	if TableDomains(nil) != nil {
		t.Error("TableDomains(nil) not nil")
	}
}

func TestTLSVersionLabel(t *testing.T) {
	for v, want := range map[uint16]string{0: "none", tls.VersionTLS10: "TLSv1", tls.VersionTLS11: "TLSv1.1",
		tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3", 0x7f1c: "other"} {
		if got := TLSVersionLabel(v); got != want {
			t.Errorf("TLSVersionLabel(%#x) = %q, want %q", v, got, want)
		}
	}
}
