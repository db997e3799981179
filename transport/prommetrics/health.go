package prommetrics

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailtls/mailtls/transport/queue"
)

// Health is a health check for a host built from this module, as an
// http.Handler (GET /healthz): 200 "ok" while every listener serves, the
// queue runs and its spool has room for mail; otherwise 503 with one line
// per problem. The program tells it what runs: ListenerServing around each
// Server.Serve, QueueRunning around Queue.Run.
type Health struct {
	Listeners int          // listeners that should serve
	Queue     *queue.Queue // its spool's free space is checked; nil: no check

	serving atomic.Int64
	running atomic.Bool
}

// ListenerServing counts a listener as serving until the returned function
// is called: call it as a Server's Serve starts, and defer the result.
func (h *Health) ListenerServing() (done func()) {
	h.serving.Add(1)
	return func() { h.serving.Add(-1) }
}

// QueueRunning records whether Queue.Run is running.
func (h *Health) QueueRunning(on bool) { h.running.Store(on) }

// Problems returns what is down, or nothing when all is well.
func (h *Health) Problems(ctx context.Context) []string {
	var down []string
	if n, want := h.serving.Load(), int64(h.Listeners); n < want {
		down = append(down, fmt.Sprintf("listeners: %d of %d serving", n, want))
	}
	if !h.running.Load() {
		down = append(down, "queue: not running")
	}
	if d := spoolShort(ctx, h.Queue); d != "" {
		down = append(down, d)
	}
	return down
}

// ServeHTTP answers the health check.
func (h *Health) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	down := h.Problems(req.Context())
	if len(down) == 0 {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	for _, d := range down {
		fmt.Fprintln(w, d)
	}
}

// spoolShort says why MAIL is refused with 452 4.3.1 for want of spool
// space (queue.CheckFreeSpace under Queue.MinFree), or "" if it is not or
// the store cannot tell.
func spoolShort(ctx context.Context, q *queue.Queue) string {
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
	return fmt.Sprintf("queue: %d bytes free, below its minimum %d: MAIL is refused with 452 4.3.1", free, minFree)
}

// Handler serves GET /metrics (m, with the Go runtime and process
// collectors, from a registry of its own) and GET /healthz (health; nil:
// no health check). Serve it on loopback or a management network: it has
// no authentication.
func Handler(m *Metrics, health http.Handler) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if health != nil {
		mux.Handle("GET /healthz", health)
	}
	return mux
}
