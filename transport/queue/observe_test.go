package queue

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

type reportRecorder struct {
	NopObserver
	mu     sync.Mutex
	events []ReportEvent
}

func (r *reportRecorder) ObserveReport(e ReportEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *reportRecorder) all() []ReportEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// TestQueueObserverReports: a report about a failed and a relayed recipient
// is observed once per action; the report's own delivery reports nothing.
func TestQueueObserverReports(t *testing.T) {
	h := newHarness(t, func(rcpt string, _ int) transport.RecipientResult {
		switch rcpt {
		case "bob@example.net":
			return permFail()
		case "carol@example.net":
			return relayed()
		}
		return ok()
	})
	rec := &reportRecorder{}
	h.q.Observer = rec
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@example.net"), rcpt("carol@example.net", "SUCCESS", "FAILURE"),
		rcpt("dave@example.net", "SUCCESS"))
	h.waitFor("the report", func() bool { return len(h.fake.rawReports()) == 1 })
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	want := []ReportEvent{{Action: ndr.ActionFailed, Recipients: 1}, {Action: ndr.ActionRelayed, Recipients: 1}}
	if got := rec.all(); !slices.Equal(got, want) {
		t.Errorf("report events = %+v, want %+v", got, want)
	}
}

// TestQueueDepth: Depth counts the recipients by state and names the oldest
// message, from memory, before and after attempts.
func TestQueueDepth(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return tempFail() })
	empty := h.q.Depth()
	if empty.Messages != 0 || !empty.Oldest.IsZero() || len(empty.Recipients) != len(storedStates)+1 {
		t.Fatalf("empty queue depth = %+v", empty)
	}
	first := h.clock.Now()
	h.enqueue("alice@example.org", rcpt("bob@example.net"), rcpt("carol@example.net"))
	h.clock.Advance(time.Minute)
	held := h.enqueue("alice@example.org", rcpt("dave@example.net"))
	d := h.q.Depth()
	if d.Messages != 2 || !d.Oldest.Equal(first) || d.Recipients[transport.Pending] != 3 || d.Recipients[transport.Deferred] != 0 {
		t.Errorf("depth before Run = %+v, want 2 messages, 3 pending, oldest %v", d, first)
	}
	h.run()
	h.waitFor("three attempts", func() bool { return h.q.Depth().Recipients[transport.Deferred] == 3 })
	h.settle()
	d = h.q.Depth()
	if d.Messages != 2 || !d.Oldest.Equal(first) || d.Recipients[transport.Pending] != 0 || d.Recipients[transport.Deferred] != 3 {
		t.Errorf("depth after attempts = %+v, want 3 deferred", d)
	}
	if err := h.q.Hold(t.Context(), held); err != nil {
		t.Fatal(err)
	}
	d = h.q.Depth()
	if d.Messages != 2 || d.Recipients[transport.Deferred] != 2 || d.Recipients[transport.Held] != 1 {
		t.Errorf("depth with one message held = %+v, want 2 deferred, 1 held", d)
	}
}

// BenchmarkDepth measures what a metrics scrape costs the queue: one
// Depth call over 10,000 queued messages of two recipients.
func BenchmarkDepth(b *testing.B) {
	q := &Queue{}
	now := time.Now()
	for i := range 10000 {
		q.add(&Message{ID: fmt.Sprintf("m%d", i), ReceivedAt: now.Add(time.Duration(i) * time.Second),
			Recipients: []*Recipient{{Address: "a@example.net", State: transport.Deferred}, {Address: "b@example.net", State: transport.Pending}}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := q.Depth(); d.Messages != 10000 {
			b.Fatalf("depth %+v", d)
		}
	}
}
