package prommetrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mailtls/mailtls/transport/queue"
)

// healthz asks h and returns the status and body.
func healthz(h *Health) (int, string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
	return w.Code, w.Body.String()
}

// TestHealthz: /healthz is 503, naming what is down, until every listener
// serves and the queue runs.
func TestHealthz(t *testing.T) {
	h := &Health{Listeners: 2}
	get := func() (int, string) { return healthz(h) }
	if code, body := get(); code != http.StatusServiceUnavailable || body != "listeners: 0 of 2 serving\nqueue: not running\n" {
		t.Errorf("nothing running: %d %q", code, body)
	}
	done := h.ListenerServing()
	h.ListenerServing()
	if code, body := get(); code != http.StatusServiceUnavailable || body != "queue: not running\n" {
		t.Errorf("queue stopped: %d %q", code, body)
	}
	h.QueueRunning(true)
	if code, body := get(); code != http.StatusOK || body != "ok\n" {
		t.Errorf("all running: %d %q", code, body)
	}
	done()
	if code, body := get(); code != http.StatusServiceUnavailable || body != "listeners: 1 of 2 serving\n" {
		t.Errorf("a listener stopped: %d %q", code, body)
	}
}

// lowSpace is a spool that reports free bytes (queue.SpaceReporter).
type lowSpace struct {
	queue.Store
	free int64
}

func (s lowSpace) FreeSpace(context.Context) (int64, error) { return s.free, nil }

// TestHealthzSpoolShortOfSpace: while the spool has less than its MinFree
// left, every MAIL gets "452 4.3.1", so /healthz is 503 and says why.
func TestHealthzSpoolShortOfSpace(t *testing.T) {
	h := &Health{Listeners: 1, Queue: &queue.Queue{Store: lowSpace{free: 1000}, MinFree: 5000}}
	h.ListenerServing()
	h.QueueRunning(true)
	get := func() (int, string) { return healthz(h) }
	if code, body := get(); code != http.StatusServiceUnavailable || body != "queue: 1000 bytes free, below its minimum 5000: MAIL is refused with 452 4.3.1\n" {
		t.Errorf("spool short of space: %d %q", code, body)
	}
	h.Queue.Store = lowSpace{free: 5000}
	if code, body := get(); code != http.StatusOK || body != "ok\n" {
		t.Errorf("spool with room: %d %q", code, body)
	}
}
