package prommetrics_test

import (
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/prommetrics"
	"github.com/mailtls/mailtls/transport/queue"
)

// One Metrics value observes the listeners, the Connector and the Queue;
// its own registry serves it on /metrics. Only the exact domains of the
// policy table get a domain label of their own.
func Example() {
	table, err := policy.LoadTable("/etc/mailtls/tls_policy")
	if err != nil {
		log.Fatal(err)
	}
	connector := &transport.Connector{Hostname: "mx.example.com", Policy: table}
	q := &queue.Queue{Deliverer: connector /* Store: ... */}
	mx := &transport.Server{Hostname: "mx.example.com", Handler: q /* TLSConfig: ... */}

	m := prommetrics.New(prommetrics.Options{Domains: prommetrics.TableDomains(table), Queue: q})
	mx.Observer, connector.Observer, q.Observer = m, m, m

	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log.Fatal(http.ListenAndServe("127.0.0.1:9125", nil))
}
