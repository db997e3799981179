// Package prommetrics exports what a mailtls relay does as Prometheus
// metrics: it implements transport.Observer and queue.Observer, and is a
// prometheus.Collector that also reads the queue's depth at scrape time.
//
// It lives in its own package so that applications that do not use
// Prometheus do not link its client library. Use it as:
//
//	m := prommetrics.New(prommetrics.Options{Domains: prommetrics.TableDomains(table), Queue: q})
//	server.Observer, connector.Observer, q.Observer = m, m, m
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(m)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// # Metrics
//
// With the default namespace "mailtls":
//
//	mailtls_smtp_sessions_total{listener,tls_version,outcome}      counter
//	mailtls_smtp_auth_total{listener,result}                       counter
//	mailtls_smtp_refusals_total{listener,reason}                   counter
//	mailtls_deliveries_total{domain,status,tls_version,verified,level,source} counter
//	mailtls_delivery_duration_seconds{status}                      histogram
//	mailtls_tls_failures_total{domain,result_type}                 counter
//	mailtls_dsn_total{action}                                      counter
//	mailtls_queue_recipients{state}                                gauge
//	mailtls_queue_messages                                         gauge
//	mailtls_queue_oldest_message_age_seconds                       gauge
//
// Label values are the String forms of the library's own types:
// transport.ListenerKind (listener), transport.SessionOutcome (outcome),
// transport.AuthOutcome (result), transport.RefusalReason (reason),
// transport.Status (status), policy.Level (level), policy.Source (source,
// "none" when empty), the RFC 8460 §4.3 result types of
// policy.FailureType (result_type), ndr.Action (action, RFC 3464
// §2.3.3) and transport.Status (state). tls_version is "TLSv1" to "TLSv1.3"
// (as in the logs), or "none" without TLS.
//
// # Bounded labels
//
// Every label takes a value from a closed set, so the number of series
// does not grow with traffic. Recipient domains are the exception that
// would not be: every new domain would be a new series, kept by Prometheus
// for as long as it retains data, and a sender who can choose recipient
// domains could grow the server's memory and the scrape without bound. So
// the domain label carries a domain only when it is one of Options.Domains
// (the domains of the policy table, which the operator chose and is asking
// about); every other domain is counted as "other".
package prommetrics

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// OtherDomain is the domain label value of every domain not in
// Options.Domains.
const OtherDomain = "other"

// DefaultLatencyBuckets are the delivery-duration histogram's upper bounds,
// in seconds: from a fast local hop to the ten-minute AttemptTimeout.
var DefaultLatencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// DepthReader reads a queue's depth; *queue.Queue implements it.
type DepthReader interface {
	Depth() queue.Depth
}

var _ DepthReader = (*queue.Queue)(nil)

// Options configures New. The zero value is valid.
type Options struct {
	// Namespace prefixes every metric name. Empty means "mailtls".
	Namespace string
	// Domains are the recipient domains (lower case, exact) that get their
	// own domain label value; every other domain is OtherDomain. See the
	// package documentation for why. Nil means every domain is
	// OtherDomain.
	Domains []string
	// Queue, when set, is read at each scrape for the queue gauges. Nil
	// means no queue gauges.
	Queue DepthReader
	// LatencyBuckets are the delivery-duration histogram's upper bounds in
	// seconds. Nil means DefaultLatencyBuckets.
	LatencyBuckets []float64
	// Now is the clock for the oldest message's age. Nil means time.Now.
	Now func() time.Time
}

// Metrics counts the events of Servers, Connectors and a Queue. It is safe
// for concurrent use. Register it with a prometheus.Registerer and set it
// as their Observer.
type Metrics struct {
	domains map[string]bool
	queue   DepthReader
	now     func() time.Time

	sessions   *prometheus.CounterVec
	auth       *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	tlsFails   *prometheus.CounterVec
	dsns       *prometheus.CounterVec

	queueRecipients *prometheus.Desc
	queueMessages   *prometheus.Desc
	queueOldest     *prometheus.Desc
}

var (
	_ transport.Observer   = (*Metrics)(nil)
	_ queue.Observer       = (*Metrics)(nil)
	_ prometheus.Collector = (*Metrics)(nil)
)

// New returns Metrics configured by opts; nothing is registered.
func New(opts Options) *Metrics {
	ns := opts.Namespace
	if ns == "" {
		ns = "mailtls"
	}
	buckets := opts.LatencyBuckets
	if buckets == nil {
		buckets = DefaultLatencyBuckets
	}
	m := &Metrics{domains: make(map[string]bool, len(opts.Domains)), queue: opts.Queue, now: opts.Now}
	if m.now == nil {
		m.now = time.Now
	}
	for _, d := range opts.Domains {
		m.domains[d] = true
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m.sessions = counter("smtp_sessions_total", "Inbound SMTP connections ended, by listener, TLS version and outcome.",
		"listener", "tls_version", "outcome")
	m.auth = counter("smtp_auth_total", "AUTH exchanges (RFC 4954), by listener and result.", "listener", "result")
	m.refusals = counter("smtp_refusals_total", "Commands, handshakes and connections refused by the inbound policy, by listener and reason.",
		"listener", "reason")
	m.deliveries = counter("deliveries_total", "Outbound delivery results per recipient, by domain, status, TLS version, verification, policy level and policy source.",
		"domain", "status", "tls_version", "verified", "level", "source")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "delivery_duration_seconds",
		Help: "Time a delivery to one next hop took (lookups, connections, transaction), per recipient, by status.", Buckets: buckets},
		[]string{"status"})
	m.tlsFails = counter("tls_failures_total", "Outbound connection attempts that met a TLS failure, by domain and RFC 8460 result type.",
		"domain", "result_type")
	m.dsns = counter("dsn_total", "Delivery status notifications (RFC 3464) queued, by action.", "action")
	m.queueRecipients = prometheus.NewDesc(prometheus.BuildFQName(ns, "queue", "recipients"),
		"Recipients of queued messages, by state.", []string{"state"}, nil)
	m.queueMessages = prometheus.NewDesc(prometheus.BuildFQName(ns, "queue", "messages"), "Queued messages.", nil, nil)
	m.queueOldest = prometheus.NewDesc(prometheus.BuildFQName(ns, "queue", "oldest_message_age_seconds"),
		"Age of the oldest queued message, 0 when the queue is empty.", nil, nil)
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.sessions, m.auth, m.refusals, m.deliveries, m.latency, m.tlsFails, m.dsns}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	if m.queue != nil {
		ch <- m.queueRecipients
		ch <- m.queueMessages
		ch <- m.queueOldest
	}
}

// Collect implements prometheus.Collector; it reads the queue's depth once.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	if m.queue == nil {
		return
	}
	d := m.queue.Depth()
	for state, n := range d.Recipients {
		ch <- prometheus.MustNewConstMetric(m.queueRecipients, prometheus.GaugeValue, float64(n), state.String())
	}
	ch <- prometheus.MustNewConstMetric(m.queueMessages, prometheus.GaugeValue, float64(d.Messages))
	age := 0.0
	if !d.Oldest.IsZero() {
		age = max(m.now().Sub(d.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(m.queueOldest, prometheus.GaugeValue, age)
}

// ObserveSession implements transport.Observer.
func (m *Metrics) ObserveSession(e transport.SessionEvent) {
	m.sessions.WithLabelValues(e.Kind.String(), TLSVersionLabel(e.TLSVersion), e.Outcome.String()).Inc()
}

// ObserveAuth implements transport.Observer.
func (m *Metrics) ObserveAuth(e transport.AuthEvent) {
	m.auth.WithLabelValues(e.Kind.String(), e.Outcome.String()).Inc()
}

// ObserveRefusal implements transport.Observer.
func (m *Metrics) ObserveRefusal(e transport.RefusalEvent) {
	m.refusals.WithLabelValues(e.Kind.String(), e.Reason.String()).Inc()
}

// ObserveDelivery implements transport.Observer.
func (m *Metrics) ObserveDelivery(e transport.DeliveryEvent) {
	status := e.Status.String()
	m.deliveries.WithLabelValues(m.domain(e.Domain), status, TLSVersionLabel(e.TLSVersion),
		strconv.FormatBool(e.Verified), e.Level.String(), sourceLabel(e.Source)).Inc()
	m.latency.WithLabelValues(status).Observe(e.Duration.Seconds())
}

// ObserveTLSFailure implements transport.Observer.
func (m *Metrics) ObserveTLSFailure(e transport.TLSFailureEvent) {
	m.tlsFails.WithLabelValues(m.domain(e.Domain), string(e.Type)).Inc()
}

// ObserveReport implements queue.Observer.
func (m *Metrics) ObserveReport(e queue.ReportEvent) {
	m.dsns.WithLabelValues(actionLabel(e.Action)).Inc()
}

// domain returns the domain label value of d.
func (m *Metrics) domain(d string) string {
	if m.domains[d] {
		return d
	}
	return OtherDomain
}

// TLSVersionLabel returns the tls_version label value of a TLS version:
// the name logs and Received headers use (transport.TLSInfo.VersionName,
// "TLSv1.2"), "none" for 0, "other" for a version it has no name for.
func TLSVersionLabel(v uint16) string {
	if v == 0 {
		return "none"
	}
	if name := (&transport.TLSInfo{Version: v}).VersionName(); strings.HasPrefix(name, "TLS") {
		return name
	}
	return "other"
}

func sourceLabel(s policy.Source) string {
	if s == "" {
		return "none"
	}
	return string(s)
}

func actionLabel(a ndr.Action) string {
	if a == "" {
		return "none"
	}
	return string(a)
}

// TableDomains returns the exact domains a policy table names (its keys
// that are neither ".parent" patterns, "[next hop]" keys nor "*"): the
// domains worth a label of their own. A ".example.com" pattern matches
// any number of subdomains, so they count as OtherDomain.
func TableDomains(t *policy.Table) []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, e := range t.Entries() {
		if k := e.Key; k != "" && k != policy.DefaultKey && k[0] != '.' && k[0] != '[' {
			out = append(out, k)
		}
	}
	return out
}
