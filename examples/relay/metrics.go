package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/mailtls/mailtls/transport/prommetrics"
)

// registerMetricsFlag defines -metrics.
func registerMetricsFlag(fs *flag.FlagSet, addr *string) {
	fs.StringVar(addr, "metrics", "", "serve Prometheus metrics on /metrics and a health check on /healthz at this `address` (e.g. 127.0.0.1:9125); "+
		"no authentication, so keep it on loopback or a management network; empty: off")
}

// metricsServer serves -metrics.
type metricsServer struct {
	l   net.Listener
	srv *http.Server
}

// setupMetrics, with -metrics, makes the Prometheus adapter the Observer of
// every listener, the Connector and the queue, and binds the metrics
// address. The domain label names only the exact domains of the -policy
// table (prommetrics.TableDomains), every other domain "other".
func (r *Relay) setupMetrics() error {
	r.health.Listeners, r.health.Queue = len(r.servers), r.queue
	if r.cfg.MetricsAddr == "" {
		return nil
	}
	m := prommetrics.New(prommetrics.Options{Domains: prommetrics.TableDomains(r.table), Queue: r.queue})
	for _, l := range r.servers {
		l.srv.Observer = m
	}
	r.connector.Observer, r.queue.Observer = m, m
	l, err := net.Listen("tcp", r.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("-metrics: %w", err)
	}
	r.metrics = &metricsServer{l: l, srv: &http.Server{Handler: prommetrics.Handler(m, &r.health), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}}
	r.extras = append(r.extras, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return r.metrics.srv.Shutdown(ctx)
	})
	return nil
}

// startMetrics serves -metrics until Shutdown.
func (r *Relay) startMetrics() {
	if r.metrics == nil {
		return
	}
	r.log.Info("serving metrics", "addr", r.metrics.l.Addr().String())
	go func() {
		if err := r.metrics.srv.Serve(r.metrics.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.errc <- fmt.Errorf("-metrics: %w", err)
		}
	}()
}

// MetricsAddr returns the bound -metrics address, or "" if it is off.
func (r *Relay) MetricsAddr() string {
	if r.metrics == nil {
		return ""
	}
	return r.metrics.l.Addr().String()
}
