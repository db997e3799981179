package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailtls/mailtls/transport/prommetrics"
	"github.com/mailtls/mailtls/transport/queue"
)

// registerMetricsFlag defines -metrics.
func registerMetricsFlag(fs *flag.FlagSet, addr *string) {
	fs.StringVar(addr, "metrics", "", "serve Prometheus metrics on /metrics and a health check on /healthz at this `address` (e.g. 127.0.0.1:9125); "+
		"no authentication, so keep it on loopback or a management network; empty: off")
}

// health is what /healthz reports besides the spool's free space
// (spoolShort): every listener serving and the queue running.
type health struct {
	listeners atomic.Int64 // listeners whose Serve is running
	queue     atomic.Bool  // queue.Run is running
}

// metricsServer serves -metrics.
type metricsServer struct {
	l   net.Listener
	srv *http.Server
}

// setupMetrics, with -metrics, builds the Prometheus adapter, makes it the
// Observer of every listener, the Connector and the queue, and binds the
// metrics address. The domain label names only the exact domains of the
// -policy table (prommetrics.TableDomains), every other domain "other".
func (r *Relay) setupMetrics() error {
	if r.cfg.MetricsAddr == "" {
		return nil
	}
	m := prommetrics.New(prommetrics.Options{Domains: prommetrics.TableDomains(r.table), Queue: r.queue})
	for _, l := range r.servers {
		l.srv.Observer = m
	}
	r.connector.Observer = m
	r.queue.Observer = m
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	l, err := net.Listen("tcp", r.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("-metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", r.serveHealth)
	r.metrics = &metricsServer{l: l, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
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

// serveHealth answers 200 "ok" while every listener serves, the queue
// runs and its spool has room for mail, else 503 with what is down.
func (r *Relay) serveHealth(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var down []string
	if n, want := r.health.listeners.Load(), int64(len(r.servers)); n < want {
		down = append(down, fmt.Sprintf("listeners: %d of %d serving", n, want))
	}
	if !r.health.queue.Load() {
		down = append(down, "queue: not running")
	}
	if d := r.spoolShort(req.Context()); d != "" {
		down = append(down, d)
	}
	if len(down) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, d := range down {
			fmt.Fprintln(w, d)
		}
		return
	}
	fmt.Fprintln(w, "ok")
}

// spoolShort says why MAIL is refused with 452 4.3.1 for want of spool
// space (queue.CheckFreeSpace under -queue-minfree), or "" if it is not
// or the store cannot tell.
func (r *Relay) spoolShort(ctx context.Context) string {
	q := r.queue
	if q == nil || q.MinFree < 0 {
		return ""
	}
	sr, ok := q.Store.(queue.SpaceReporter)
	if !ok {
		return ""
	}
	free, err := sr.FreeSpace(ctx)
	if err != nil {
		return ""
	}
	minFree := q.MinFree
	if minFree == 0 {
		minFree = queue.DefaultMinFree
	}
	if queue.CheckFreeSpace(free, minFree, 0) == nil {
		return ""
	}
	return fmt.Sprintf("queue: %d bytes free, below -queue-minfree %d: MAIL is refused with 452 4.3.1", free, minFree)
}
