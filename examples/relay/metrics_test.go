package main

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailtls/mailtls/transport/transporttest"
)

// scrape fetches /metrics from addr, parses it with the Prometheus text
// parser and returns the relay's own samples (mailtls_*) as
// `name{label="value",...}` → value; histograms as their _count (their
// _sum and buckets depend on timing).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "mailtls_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			labels := "{" + strings.Join(ls, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name+labels] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name+labels] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// moved returns the samples whose value differs between before and after,
// with the difference; gauges (mailtls_queue_*) are left out.
func moved(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if strings.HasPrefix(k, "mailtls_queue_") {
			continue
		}
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func dumpSamples(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "  %s %g\n", k, m[k])
	}
	return b.String()
}

// TestMetricsAfterKnownTraffic sends known traffic through a relay with
// -metrics: a STARTTLS submission session with one failed and one good
// AUTH and two accepted messages (one for a TLS partner, delivered with a
// verified certificate; one for a plaintext-only host under "encrypt
// on-failure=bounce", which bounces with a DSN), and a plaintext MAIL
// refused with 530. It scrapes /metrics with the Prometheus text parser
// and checks that exactly the expected counters moved, by exactly the
// expected amounts, and that the queue gauges end at zero.
func TestMetricsAfterKnownTraffic(t *testing.T) {
	partner := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, DSN: true})
	legacy := transporttest.NewPlainServer(t)
	ca := writeFile(t, "ca.pem", string(partner.CA.CertPEM))
	pol := writeFile(t, "tls_policy", fmt.Sprintf("partner.example secure match=%s\nlegacy.example encrypt on-failure=bounce\n", partner.Hostname))
	users := writeUsers(t, "alice", "s3cret")
	tr := startRelay(t, "-users", users, "-policy", pol, "-outbound-ca", ca, "-metrics", "127.0.0.1:0",
		"-route", fmt.Sprintf("partner.example=127.0.0.1:%d", partner.Port),
		"-route", fmt.Sprintf("legacy.example=127.0.0.1:%d", legacy.Port))
	addr := tr.MetricsAddr()
	if addr == "" {
		t.Fatal("-metrics not serving")
	}
	waitFor(t, "/healthz to say ok", 10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == "ok\n"
	})
	before := scrape(t, addr)

	// A plaintext MAIL on the submission port: 530 5.7.0.
	plain := tr.dial(t, "submission")
	if err := plain.Mail("alice@localhost", nil); err == nil {
		t.Fatal("plaintext MAIL accepted")
	} else if code, ec := smtpCode(t, err); code != 530 || ec != "5.7.0" {
		t.Fatalf("plaintext MAIL: %d %s", code, ec)
	}
	plain.Quit()

	// STARTTLS, a bad then a good AUTH, two messages.
	c := tr.dialTLS(t, "submission")
	if err := auth(c, "alice", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	for _, rcpt := range []string{"bob@partner.example", "old@legacy.example"} {
		if err := send(c, "alice@localhost", []string{rcpt}, testBody); err != nil {
			t.Fatalf("submission to %s: %v", rcpt, err)
		}
	}
	c.Quit()

	waitFor(t, "delivery to the partner", 30*time.Second, func() bool { return len(partner.Messages()) == 1 })
	waitMaildir(t, tr, "alice@localhost", 1) // the DSN
	waitFor(t, "the queue to empty", 30*time.Second, func() bool {
		msgs, err := tr.queue.List(t.Context())
		return err == nil && len(msgs) == 0
	})

	want := map[string]float64{
		`mailtls_smtp_sessions_total{listener="submission",outcome="no-mail",tls_version="none"}`:                                                    1,
		`mailtls_smtp_sessions_total{listener="submission",outcome="accepted",tls_version="TLSv1.3"}`:                                                1,
		`mailtls_smtp_refusals_total{listener="submission",reason="no-starttls"}`:                                                                    1,
		`mailtls_smtp_auth_total{listener="submission",result="failure"}`:                                                                            1,
		`mailtls_smtp_auth_total{listener="submission",result="success"}`:                                                                            1,
		`mailtls_deliveries_total{domain="partner.example",level="secure",source="static",status="delivered",tls_version="TLSv1.3",verified="true"}`: 1,
		`mailtls_deliveries_total{domain="legacy.example",level="encrypt",source="static",status="failed",tls_version="none",verified="false"}`:      1,
		`mailtls_delivery_duration_seconds_count{status="delivered"}`:                                                                                1,
		`mailtls_delivery_duration_seconds_count{status="failed"}`:                                                                                   1,
		`mailtls_tls_failures_total{domain="legacy.example",result_type="starttls-not-supported"}`:                                                   1,
		`mailtls_dsn_total{action="failed"}`:                                                                                                         1,
	}
	// The queue gauges follow the queue's memory, which forgets a message
	// a moment after the store has: wait for both.
	queueEmpty := func(m map[string]float64) bool {
		for k, v := range m {
			if strings.HasPrefix(k, "mailtls_queue_") && v != 0 {
				return false
			}
		}
		return true
	}
	var after map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = scrape(t, addr)
		if maps.Equal(moved(before, after), want) && queueEmpty(after) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := moved(before, after); !maps.Equal(got, want) {
		t.Errorf("counters moved:\n%swant:\n%s", dumpSamples(got), dumpSamples(want))
	}
	for k, v := range after {
		if strings.HasPrefix(k, "mailtls_queue_") && v != 0 {
			t.Errorf("%s = %g after the queue emptied, want 0", k, v)
		}
	}
	if _, ok := after[`mailtls_queue_recipients{state="deferred"}`]; !ok {
		t.Errorf("no queue gauge by state in:\n%s", dumpSamples(after))
	}
}
